// Command golookup resolves a name with Go's own resolver, as a Go
// program in a Pod does (built with CGO_ENABLED=0, run with
// GODEBUG=netdns=go), and prints its addresses, one a line. It exits 2 when
// the name does not exist, 1 on any other failure.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: golookup NAME")
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := &net.Resolver{PreferGo: true}
	addrs, err := r.LookupIPAddr(ctx, os.Args[1]) // A and AAAA, like getaddrinfo
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		if de, ok := errors.AsType[*net.DNSError](err); ok && de.IsNotFound {
			os.Exit(2)
		}
		os.Exit(1)
	}
	for _, a := range addrs {
		fmt.Println(a.IP)
	}
}
