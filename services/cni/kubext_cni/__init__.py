"""kubext cni: CNI bridge plugin (veth, bridge, IPAM delegation, masquerade)."""
