"""The real-component rig: upstream binaries built from Go modules, and a local control plane."""
