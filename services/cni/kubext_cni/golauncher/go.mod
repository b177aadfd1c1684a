module kubext/cni-launcher

go 1.22
