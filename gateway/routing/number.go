package routing

import (
	"slices"

	"github.com/nyaruka/phonenumbers"
)

// Number is a dialled outside number, read once for the VPBX and for the
// dial rules, so that checking the rules needs no parsing.
type Number struct {
	// E164 is the number in E.164 ("+79161234567"), or the digits as
	// dialled for an emergency number ("112").
	E164 string
	// Region is the number's country: "RU", "KZ"; "001" for non-geographic
	// services (+882, +881); "" when no country's numbering plan knows it.
	Region string
	// CountryCode is the calling code (7 for both RU and KZ).
	CountryCode int
	// Type is what the numbering plan says the number is (UNKNOWN: not a
	// valid number of any plan).
	Type phonenumbers.PhoneNumberType
	// Emergency marks a short emergency number of the default region.
	Emergency bool
}

// emergencyNumbers always go through, besides what phonenumbers knows:
// Russia's single number, the service numbers 101-104 and their old forms
// 01-04, which phonenumbers does not all list.
var emergencyNumbers = map[string][]string{"RU": {"112", "101", "102", "103", "104", "01", "02", "03", "04"}}

// emergency returns the digits of raw if it is an emergency number of region.
func emergency(raw, region string) (string, bool) {
	if len(raw) > 8 {
		return "", false
	}
	d := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case c >= '0' && c <= '9':
			d = append(d, c)
		case c == ' ' || c == '-':
		default:
			return "", false
		}
	}
	s := string(d)
	if s == "" {
		return "", false
	}
	return s, slices.Contains(emergencyNumbers[region], s) || phonenumbers.IsEmergencyNumber(s, region)
}

// Classify normalises raw as Normalize does and reads what the dial rules
// need to know about it.
func Classify(raw, region string) (Number, error) {
	if d, ok := emergency(raw, region); ok {
		return Number{E164: d, Region: region, Emergency: true}, nil
	}
	n, err := parse(raw, region)
	if err != nil {
		return Number{}, err
	}
	s, err := e164(raw, n)
	if err != nil {
		return Number{}, err
	}
	return Number{E164: s, Region: phonenumbers.GetRegionCodeForNumber(n),
		CountryCode: int(n.GetCountryCode()), Type: phonenumbers.GetNumberType(n)}, nil
}
