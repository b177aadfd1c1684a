module kubext.local/webhooks-go-peer

go 1.22
