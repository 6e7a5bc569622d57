//go:build race

package upstream

// raceEnabled: the race detector changes escape analysis, so allocation
// counts are only checked without it.
const raceEnabled = true
