module kubext.local/webhooks-loadgen

go 1.22
