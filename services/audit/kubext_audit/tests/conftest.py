# The live test's fixtures (kube_cluster) come from the rig plugin, loaded by name.
pytest_plugins = ["kubext_rig.pytest_plugin"]
