"""The CNI plugin's pure core: config, results, plan and rule text; no I/O, no pyroute2."""
