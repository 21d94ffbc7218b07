package region

import (
	"time"
)

// A follower learns that an entry committed only with the leader's next
// AppendEntries (Raft's heartbeats carry no commit index). A busy region
// appends all the time; an idle one would send an empty append to every
// follower every commit timeout, which is most of what an idle region
// costs. So the commit timeout is long, and when a follower waits to learn
// of a commit (a write it forwarded, a read index past what it knows), the
// leader nudges: it makes sure an append goes out after the commit, a
// barrier entry when no other entry was appended meanwhile.

// idleCommitTimeout is how often an idle leader sends its followers an
// append anyway: it bounds how stale an idle follower's replica gets for
// readers that do not ask for a read index.
const idleCommitTimeout = 500 * time.Millisecond

// nudgeDelay is how long a nudge waits for another entry's append, which
// carries the commit as well as a barrier would.
const nudgeDelay = time.Millisecond

// nudgeTimeout bounds one barrier of a nudge.
const nudgeTimeout = 2 * time.Second

// nudge makes the followers learn soon that index (committed) is: called
// by the leader when a follower waits for it. Nudges coalesce: one runs at
// a time, for the highest index asked meanwhile.
func (g *Group) nudge(index uint64) {
	g.nudgeMu.Lock()
	defer g.nudgeMu.Unlock()
	if index <= g.nudged {
		return
	}
	g.nudgeFor = max(g.nudgeFor, index)
	if !g.nudging {
		g.nudging = true
		go g.runNudges()
	}
}

func (g *Group) runNudges() {
	for {
		g.nudgeMu.Lock()
		want := g.nudgeFor
		if want <= g.nudged {
			g.nudging = false
			g.nudgeMu.Unlock()
			return
		}
		g.nudgeMu.Unlock()
		// Any append sent after want committed carries it: one of
		// another entry, appended meanwhile, does the work.
		last := g.raft.LastIndex()
		time.Sleep(nudgeDelay)
		if g.raft.LastIndex() == last {
			if err := g.raft.Barrier(nudgeTimeout).Error(); err != nil {
				g.log.Debug("nudging the followers", "index", want, "err", err)
			}
		}
		g.nudgeMu.Lock()
		g.nudged = max(g.nudged, want)
		g.nudgeMu.Unlock()
	}
}
