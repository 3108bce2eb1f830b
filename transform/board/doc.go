// Package board follows the deterministic transforms (DETs) of a log's
// stream for the node's transforms page: every DET generation with its
// instances, its newest snapshot and who confirmed it, its divergences
// and rejections, and a bounded history of samples for charts. A [Board]
// ([New]) reads what the instances publish and what the log holds; it
// writes nothing. [Board.Handler] serves it as JSON under /api/transforms,
// and [Page] is the page of the node's UI (package web's shell) over it.
//
// # What it reads
//
// Every Options.Poll (default 1s) the board reads the status board
// ([transform.StatusBoard], the bucket where instances publish their
// [transform.Status] every Config.StatusInterval, 2s by default) for its
// log's stream only, and groups the statuses by DET name and generation:
// the DET's ID is [transform.GenerationName] ("tally", "tally.g2"). Only
// when an instance reports a newer snapshot (Status.LastSnapshot) does it
// read the generation's newest snapshot ([transform.SnapshotStore.Newest])
// and the claims at its position ([transform.Claims], the ESK
// "<output>.checkpoints.<input seq>"); only when an instance counts other
// rejections does it count the rejections ESK ("<output>.rejected") and
// read the records added since, keeping the newest Options.Rejections (20).
// A poll thus costs one key listing and one read per instance, plus a few
// reads per snapshot or rejection, whatever the log's length.
//
// Each poll in which an instance of a DET published takes a [Sample]: the
// time of the newest status, the most outputs an instance counts, the
// rate since the previous sample, the least lag of a live instance and
// each instance's won outputs. A DET keeps the samples of the last
// Options.History (5m), at most Options.MaxSamples (600). DETs whose
// statuses expired from the status board (a day without updates) are
// dropped, with their history; the history starts anew when the node
// restarts.
//
// An instance's state is [transform.Status.State]: running, stopped, stale
// (no heartbeat for three of its intervals: killed or cut off), shadow or
// observer; its heartbeat age is measured by this node's clock. The
// snapshot shown is the newest stored, confirmed or not: it is a restore
// point ("confirmed") when a claim in the log agrees with it and none
// contradicts it, as [transform.SnapshotStore.Latest] decides.
//
// # JSON API
//
//	GET /api/transforms/dets        {"stream","polled","error","transforms":[det...]}: every DET, by name and generation
//	GET /api/transforms/dets/{id}   det, with "history": [sample...], oldest first
//
// A det is {"id","stream","name","generation","output","state","outputs",
// "lag","outputs_per_s","updated","instances","divergences","snapshot",
// "snapshot_error","rejections"}: "state" is running when an instance
// runs or observes, else stale when one's heartbeat stopped, else
// stopped. An instance is its [transform.Status] as published (field
// names as there; "every_ns" its heartbeat interval) with "state",
// "heartbeat_age_s" and "divergence_count"; the divergences themselves are
// the det's "divergences", each {"what","name","instance","index",
// "input_esk","input_seq","own_sha256","landed_sha256"} (what is "output"
// or "snapshot"; index the output index). "snapshot" is null or
// {"input_seq","outputs","rejections","version","hash","taken","object",
// "claims_esk","claims":[{"by","hash","agrees"}],"confirmed_by",
// "contradicted_by","confirmed"}. "rejections" is {"esk","count",
// "recent":[{"position","time","input","error"}],"error"}, newest first
// (a record that does not decode has "data" or "data_base64" instead of
// "input"). A sample is {"t","outputs","outputs_per_s","lag","won":
// {instance: n}}. Times are RFC 3339 in UTC.
//
// "polled" is when the status board was last read; "error" says why the
// last read failed (the DETs are then as of "polled"). The API answers
// from the board's memory, without a round trip to NATS. Errors are JSON
// {"error"}: 404 for an unknown DET or path, 405 for a method other than
// GET.
//
// # Page
//
// [Page] is the transforms page at /transforms: the DETs in a list (state,
// generation, instance count, divergences), and the selected one's
// instances (state, version, input position, inputs, outputs, won, lost,
// lag, pending, heartbeat, why it stopped), charts drawn as inline SVG
// (outputs per second and lag over the history, wins per instance), its
// divergences, its newest snapshot with the claims in the log, and its
// newest rejections. The page polls the API every second; it is plain
// HTML, CSS and JavaScript embedded in the binary, on the shell's
// common.js and style.css.
//
// # Access
//
// The handler does no authentication and serves only reads: the node
// mounts it behind its access rule (package web's Protect), where every
// user who may sign in may read it, whatever its role.
//
// # Concurrency
//
// A Board is safe for concurrent use: polls run one at a time, and the
// views copy what they return.
package board
