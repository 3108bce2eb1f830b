package transport

import (
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Role says what a [User] of an embedded server may do.
type Role string

const (
	// RoleAdmin may do everything: manage streams, write any ESK. The
	// node's own connection is an admin.
	RoleAdmin Role = "admin"
	// RoleSource may append to the ESKs matching its Sources and read the
	// whole log; it cannot create, change, delete or purge streams or
	// messages. A deterministic transform's worker is a source whose
	// Sources are its output ESK and "<output>.rejected", with its
	// snapshot and status buckets in Buckets.
	RoleSource Role = "source"
	// RoleReader may read the log and write nothing.
	RoleReader Role = "reader"
)

// User is one identity allowed to connect to an embedded server: a name
// and password, or an NKey.
type User struct {
	// Name and Password authenticate by password. Password is plain text
	// or a bcrypt hash ("$2a$..."), as NATS accepts.
	Name     string `json:"name,omitempty"`
	Password string `json:"password,omitempty"`
	// NKey is a user's public NKey ("U..."), authenticating by signature
	// instead of a password. Name is then only a label in errors.
	NKey string `json:"nkey,omitempty"`
	// Role is what the user may do (default RoleSource).
	Role Role `json:"role,omitempty"`
	// Sources are the ESK patterns a source may append to, such as
	// "orders.>" (wildcards as in [ValidateESKPattern]).
	Sources []string `json:"sources,omitempty"`
	// Buckets are JetStream KV or object store buckets the user may create,
	// read and write, such as "detbus-snapshots" and "detbus-status" for a
	// transform's worker, or "detbus-kv-snapshots" for a KV replica.
	Buckets []string `json:"buckets,omitempty"`
}

// AuthConfig lists who may connect to an embedded server. With no users,
// the server accepts any client.
type AuthConfig struct {
	Users []User `json:"users"`
	// Stream and Prefix name the log the permissions are for (defaults
	// DefaultStream and DefaultPrefix).
	Stream string `json:"stream,omitempty"`
	Prefix string `json:"prefix,omitempty"`
}

// TLSConfig holds the files of a server's TLS certificate.
type TLSConfig struct {
	CertFile string // server certificate (PEM)
	KeyFile  string // its private key (PEM)
	// CAFile, when set, is the CA that client certificates are checked
	// against; with VerifyClients, clients must present one.
	CAFile        string
	VerifyClients bool
}

func (u User) label() string {
	if u.Name != "" {
		return u.Name
	}
	return u.NKey
}

// Validate reports every problem with the users, joined.
func (a AuthConfig) Validate() error {
	var errs []error
	seen := map[string]bool{}
	for i, u := range a.Users {
		where := fmt.Sprintf("user %d (%s)", i, u.label())
		switch {
		case u.NKey != "" && u.Password != "":
			errs = append(errs, fmt.Errorf("%w: %s has both an nkey and a password", ErrInvalidOption, where))
		case u.NKey != "":
			if !nkeys.IsValidPublicUserKey(u.NKey) {
				errs = append(errs, fmt.Errorf("%w: %s: nkey %q is not a public user key (U...)", ErrInvalidOption, where, u.NKey))
			}
		case u.Name == "" || u.Password == "":
			errs = append(errs, fmt.Errorf("%w: %s needs a name and a password, or an nkey", ErrInvalidOption, where))
		case !validUserName(u.Name):
			errs = append(errs, fmt.Errorf("%w: %s: a name is 1 to 64 letters, digits, '-' and '_' (it names the user's inboxes)", ErrInvalidOption, where))
		}
		id := u.Name + "\x00" + u.NKey
		if u.NKey != "" {
			id = u.NKey
		}
		if seen[id] {
			errs = append(errs, fmt.Errorf("%w: %s appears twice", ErrInvalidOption, where))
		}
		seen[id] = true
		switch u.role() {
		case RoleAdmin, RoleReader:
			if len(u.Sources) > 0 {
				errs = append(errs, fmt.Errorf("%w: %s: sources are for role %q, not %q", ErrInvalidOption, where, RoleSource, u.role()))
			}
		case RoleSource:
			if len(u.Sources) == 0 {
				errs = append(errs, fmt.Errorf("%w: %s: a source needs at least one ESK pattern in sources", ErrInvalidOption, where))
			}
			for _, s := range u.Sources {
				if err := ValidateESKPattern(s); err != nil {
					errs = append(errs, fmt.Errorf("%w: %s: source %q: %w", ErrInvalidOption, where, s, err))
				}
			}
		default:
			errs = append(errs, fmt.Errorf("%w: %s: role %q is not one of %q, %q, %q", ErrInvalidOption, where, u.Role, RoleAdmin, RoleSource, RoleReader))
		}
		for _, b := range u.Buckets {
			if b == "" || strings.ContainsAny(b, ".*> \t") {
				errs = append(errs, fmt.Errorf("%w: %s: bucket name %q is not valid", ErrInvalidOption, where, b))
			}
		}
	}
	return errors.Join(errs...)
}

func (u User) role() Role {
	if u.Role == "" {
		return RoleSource
	}
	return u.Role
}

func validUserName(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// InboxID is what names the user's inboxes: the name of a password user,
// the public key of an NKey user.
func (u User) InboxID() string {
	if u.NKey != "" {
		return u.NKey
	}
	return u.Name
}

// InboxPrefix is the prefix of the inboxes of the user with inbox id id
// ([User.InboxID]): a user of a node with users subscribes only to its
// own inboxes, so a client must make its inboxes there
// ([UserOptions], [NKeyOptions], or nats.CustomInboxPrefix).
func InboxPrefix(id string) string { return "_INBOX_" + id }

// UserOptions are the options a password user connects with: its
// credentials and its inbox prefix.
func UserOptions(name, password string) []nats.Option {
	return []nats.Option{nats.UserInfo(name, password), nats.CustomInboxPrefix(InboxPrefix(name))}
}

// NKeyOptions are the options an NKey user connects with, from the file
// holding its seed: its signature and its inbox prefix.
func NKeyOptions(seedFile string) ([]nats.Option, error) {
	o, err := nats.NkeyOptionFromSeed(seedFile)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(seedFile)
	if err != nil {
		return nil, err
	}
	kp, err := nkeys.ParseDecoratedNKey(data)
	if err != nil {
		return nil, fmt.Errorf("nkey seed %s: %w", seedFile, err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, err
	}
	return []nats.Option{o, nats.CustomInboxPrefix(InboxPrefix(pub))}, nil
}

// Reserved is the ESK prefix the node keeps for itself (the checkpoints
// that confirm its snapshots): only admins may write under it.
const Reserved = "detbus"

// Permissions are the NATS permissions a user of the log gets. Every
// non-admin may read: the log's stream info, direct gets and the leader's
// message get, the node's read services, and the log's subjects as they
// are published (to wake a reader that follows the log), and the node's
// snapshot and status buckets (which hold what the log tells); it subscribes
// only to its own inboxes ([InboxPrefix]). A source may also publish to
// "<prefix>.<source>" for each of its sources, except under the reserved
// "<prefix>.detbus". Buckets grant their use: reading and writing keys
// and objects, and removing them; never creating, changing or deleting a
// bucket's stream, which the node provisions. No non-admin may create
// consumers (a consumer's deliveries go to any subject its creator names,
// past every permission), manage streams, or use the service's write
// endpoints; an admin gets nil (everything).
func (u User) Permissions(stream, prefix string) *server.Permissions {
	if u.role() == RoleAdmin {
		return nil
	}
	inbox := InboxPrefix(u.InboxID())
	pub := []string{
		"$JS.API.INFO",
		"$JS.API.STREAM.INFO." + stream,
		"$JS.API.DIRECT.GET." + stream,
		"$JS.API.DIRECT.GET." + stream + ".>",
		"$JS.API.STREAM.MSG.GET." + stream,
		"$SYS.REQ.USER.INFO",
		ServiceName + ".get",
		ServiceName + ".count",
		ServiceName + ".kv.>",
		ServiceName + ".tasks.>",
		inbox + ".>", // trace events of its own requests
	}
	if u.role() == RoleSource {
		for _, s := range u.Sources {
			pub = append(pub, prefix+"."+s)
		}
	}
	// The node's snapshot and status buckets hold what the log already
	// tells a reader: everyone may read them.
	for _, s := range []string{"KV_detbus-snapshots", "KV_detbus-status", "OBJ_detbus-kv-snapshots", "OBJ_detbus-tasks-snapshots"} {
		pub = append(pub, "$JS.API.STREAM.INFO."+s, "$JS.API.DIRECT.GET."+s, "$JS.API.DIRECT.GET."+s+".>")
	}
	for _, b := range u.Buckets {
		for _, s := range []string{"KV_" + b, "OBJ_" + b} {
			pub = append(pub, "$JS.API.STREAM.INFO."+s, "$JS.API.DIRECT.GET."+s, "$JS.API.DIRECT.GET."+s+".>",
				"$JS.API.STREAM.MSG.GET."+s, "$JS.API.STREAM.PURGE."+s)
		}
		pub = append(pub, "$KV."+b+".>", "$O."+b+".>")
	}
	slices.Sort(pub)
	pub = slices.Compact(pub)
	deny := []string{
		"$JS.API.STREAM.CREATE.>",
		"$JS.API.STREAM.UPDATE.>",
		"$JS.API.STREAM.DELETE.>",
		"$JS.API.STREAM.PURGE." + stream,
		"$JS.API.STREAM.MSG.DELETE.>",
		"$JS.API.CONSUMER.>",
		ServiceName + ".append",
		ServiceName + ".exists_or_write",
		prefix + "." + Reserved + ".>",
	}
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: pub, Deny: deny},
		Subscribe: &server.SubjectPermission{Allow: []string{inbox + ".>", prefix + ".>"}},
	}
}

// apply fills opts with the users of a.
func (a AuthConfig) apply(opts *server.Options) {
	stream, prefix := cmp.Or(a.Stream, DefaultStream), cmp.Or(a.Prefix, DefaultPrefix)
	for _, u := range a.Users {
		perms := u.Permissions(stream, prefix)
		if u.NKey != "" {
			opts.Nkeys = append(opts.Nkeys, &server.NkeyUser{Nkey: u.NKey, Permissions: perms})
			continue
		}
		opts.Users = append(opts.Users, &server.User{Username: u.Name, Password: u.Password, Permissions: perms})
	}
}

func (t *TLSConfig) serverTLS() (*tls.Config, error) {
	if t.CertFile == "" || t.KeyFile == "" {
		return nil, fmt.Errorf("%w: TLS needs both a certificate and a key file", ErrInvalidOption)
	}
	cfg, err := server.GenTLSConfig(&server.TLSConfigOpts{
		CertFile: t.CertFile,
		KeyFile:  t.KeyFile,
		CaFile:   t.CAFile,
		Verify:   t.VerifyClients,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: TLS: %v", ErrInvalidOption, err)
	}
	return cfg, nil
}
