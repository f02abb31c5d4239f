package nodecache

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// After a burst (a flood's goroutines and their stacks, a large config
// refused) the Go runtime returns freed memory to the OS gradually, and with
// GOMEMLIMIT at the pod's limit it has no reason to hurry: the pod's RSS
// stays high long after the burst. Every releaseEvery, when more than
// releaseAbove of the heap is free and still held, give it back at once
// (a GC and a scavenge: about a millisecond for this heap).
const (
	releaseEvery = 5 * time.Second
	releaseAbove = 16 << 20
)

func releaseMemory(ctx context.Context) {
	heapFree := []metrics.Sample{{Name: "/memory/classes/heap/free:bytes"}}
	t := time.NewTicker(releaseEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		metrics.Read(heapFree)
		if heapFree[0].Value.Kind() == metrics.KindUint64 && heapFree[0].Value.Uint64() > releaseAbove {
			debug.FreeOSMemory()
		}
	}
}
