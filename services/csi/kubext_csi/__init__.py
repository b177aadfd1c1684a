"""kubext csi: CSI driver with real local volumes over gRPC on a unix socket."""
