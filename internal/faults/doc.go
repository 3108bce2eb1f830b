// Package faults is detbus's fault-injection suite: a three-node cluster
// of real `detbus serve` processes on loopback, TCP proxies in front of
// every node to cut it off, and a test that runs a workload while nodes
// are SIGKILLed, SIGSTOPped and partitioned, then checks what was
// promised.
//
// # Harness
//
// [Network] holds the proxies: one for each node's client port and one for
// its route port. Nodes advertise their route proxy as their cluster
// address (`detbus serve --cluster-advertise`), so routes run through the
// proxies whatever addresses gossip spreads; a route proxy learns which
// node dialed from the INFO line the dialer sends. [Network.Partition]
// isolates nodes from their peers and their clients: it closes their
// connections and refuses new ones until [Network.Heal]. Clients connect
// through the client proxies only (nats.IgnoreDiscoveredServers), with a
// short ping interval, so they leave a dead, paused or isolated node
// within about a second ([ClientOptions]).
//
// [StartCluster] runs the nodes from a binary built once per test run
// ([BuildDetbus], without the race detector) and kills them at cleanup,
// logging their output if the test failed. [Node] kills (SIGKILL), restarts
// on the same data directory, pauses (SIGSTOP) and resumes (SIGCONT).
package faults
