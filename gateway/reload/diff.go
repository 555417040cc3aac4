package reload

import (
	"encoding"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"callgate/gateway/config"
)

// Live are the configuration keys a reload applies while callgate runs.
// Every other key (those of sections added later too) keeps its running
// value until a restart, and a change to it is reported as needing one:
// what a part copied into its sockets, threads or connectors at start
// cannot be swapped under the calls.
var Live = []string{
	"sip.allow_networks", "sip.min_expires", "sip.max_expires", "sip.default_expires", "sip.max_contacts", "sip.scanner_user_agents",
	"recording.retention", "recording.min_free",
	"upstream.account",
	"calls.ring_timeout",
	"http.api_tokens", "http.api_tokens_file", "http.token",
	"employee", "desk", "group", "dial",
	"crm.retailcrm.exclude", "crm.megaplan.exclude",
	"console.visibility", "console.business_hours", "console.business_days",
}

// Effective is the configuration a reload puts in force: next's live keys
// with every other key as running has it, and the keys whose change needs
// a restart (sorted). Upstream accounts need one too when callgate started
// without any (addAccounts false: no registrations run to add them to).
func Effective(running, next *config.Config, addAccounts bool) (*config.Config, []string) {
	eff := *next
	eff.File = next.File
	live := slices.Clone(Live)
	if !addAccounts && len(running.Upstream.Accounts) == 0 {
		live = slices.DeleteFunc(live, func(k string) bool { return k == "upstream.account" })
	}
	var restart []string
	keep(reflect.ValueOf(&eff).Elem(), reflect.ValueOf(running).Elem(), "", live, &restart)
	slices.Sort(restart)
	return &eff, restart
}

// keep walks the configuration by its TOML keys: a live key is left as
// next has it, a table is walked into, and any other key that differs is
// named in restart and set back to what runs.
func keep(eff, run reflect.Value, prefix string, live []string, restart *[]string) {
	t := eff.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		key := name
		if prefix != "" {
			key = prefix + "." + name
		}
		switch {
		case slices.Contains(live, key):
		case f.Type.Kind() == reflect.Struct && !f.Type.Implements(textMarshaler): // a table
			keep(eff.Field(i), run.Field(i), key, live, restart)
		case canon(eff.Field(i)) != canon(run.Field(i)):
			*restart = append(*restart, key)
			eff.Field(i).Set(run.Field(i))
		}
	}
}

var textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()

// canon is a value as a string that is the same for values a file would
// write the same way ("udp:0.0.0.0:5060" and "0.0.0.0:5060" are one
// address).
func canon(v reflect.Value) string {
	if v.Type().Implements(textMarshaler) {
		b, _ := v.Interface().(encoding.TextMarshaler).MarshalText()
		return string(b)
	}
	switch v.Kind() {
	case reflect.Slice, reflect.Array:
		var b strings.Builder
		fmt.Fprintf(&b, "[%d", v.Len())
		for i := range v.Len() {
			b.WriteString("\x00" + canon(v.Index(i)))
		}
		return b.String() + "]"
	case reflect.Pointer:
		if v.IsNil() {
			return "nil"
		}
		return "&" + canon(v.Elem())
	case reflect.Struct:
		var b strings.Builder
		b.WriteString("{")
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				b.WriteString(canon(v.Field(i)) + "\x00")
			}
		}
		return b.String() + "}"
	case reflect.Map:
		keys := v.MapKeys()
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			parts = append(parts, canon(k)+"="+canon(v.MapIndex(k)))
		}
		slices.Sort(parts)
		return "map[" + strings.Join(parts, "\x00") + "]"
	}
	return fmt.Sprintf("%#v", v.Interface())
}
