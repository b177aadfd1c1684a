"""The device plugin's pure core: the inventory, allocation decisions and errors (no gRPC, no I/O).

The gRPC edge (``server``), the kubelet lifecycle (``plugin``) and discovery (``backends``) use it;
the import contract in ``.importlinter`` keeps it pure.
"""
