"""k8s/ as the package ``search.manifests`` (pyproject.toml maps it): the kubernetes launcher
loads its trial Job template, ``job.yaml``, from here with importlib.resources, so the file that
`kubectl` applies and the one the launcher builds trials from are the same file. This module is
what makes the mapping work in an editable install too; kustomize ignores it."""
