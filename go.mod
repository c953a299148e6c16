module github.com/archway-gateway/archway

go 1.26
