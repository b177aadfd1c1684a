pytest_plugins = ["kubext_rig.pytest_plugin"]
