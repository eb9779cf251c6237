package r4

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
)

// ruleCase is a small document that must raise Rule at Expression (or be
// free of errors when Rule is empty).
type ruleCase struct {
	name string
	doc  string
	rule string
	expr string
	as   string // ValidateAs type, if set
	msg  string // the issue's message holds it, if set
	// never is text of the document the issue's message and expression
	// must not repeat (a property name the client made up).
	never string
}

// patient wraps Patient elements into a document.
func patient(body string) string { return `{"resourceType":"Patient",` + body + `}` }

// obs wraps elements into an Observation that has its required elements.
func obs(body string) string {
	return `{"resourceType":"Observation","status":"final","code":{"text":"x"}` + body + `}`
}

const ext = `{"url":"http://example.org/e","valueString":"v"}`

var ruleCases = []ruleCase{
	// Valid documents.
	{name: "minimal patient", doc: `{"resourceType":"Patient"}`},
	{name: "primitive extension", doc: patient(`"birthDate":"1970-01-01","_birthDate":{"id":"b","extension":[` + ext + `]}`)},
	{name: "extension only primitive", doc: patient(`"_birthDate":{"extension":[` + ext + `]}`)},
	{name: "trailing null extension", doc: patient(`"name":[{"given":["a"],"_given":[{"id":"x"},null]}]`)},
	{name: "aligned primitive arrays", doc: patient(`"name":[{"given":["a",null],"_given":[null,{"extension":[` + ext + `]}]}]`)},
	{name: "escaped key", doc: `{"resourceType":"Patient","gend\u0065r":"male"}`},
	{name: "bom", doc: "\ufeff" + `{"resourceType":"Patient"}`},
	{name: "observation", doc: obs(`,"valueQuantity":{"value":6.3,"unit":"mmol/l","system":"http://unitsofmeasure.org","code":"mmol/L"}`)},
	{name: "decimal exponent", doc: obs(`,"valueQuantity":{"value":6.022e23}`)},
	{name: "decimal with 17 digits a double keeps", doc: obs(`,"valueQuantity":{"value":0.30000000000000004}`)},
	{name: "decimal with 15 digits", doc: obs(`,"valueQuantity":{"value":-123456789.012345}`)},
	{name: "decimal with trailing zeros", doc: obs(`,"valueQuantity":{"value":1.50000000000000000000000000000000000000}`)},
	{name: "decimal zero written long", doc: obs(`,"valueQuantity":{"value":-0.000e-99999}`)},
	{name: "decimal near the upper bound", doc: obs(`,"valueQuantity":{"value":9.99e299}`)},
	{name: "decimal exponent with leading zeros", doc: obs(`,"valueQuantity":{"value":1e0000001}`)},
	{name: "conditional reference in bundle", doc: `{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:0e6a2f0c-7f0e-4c3f-9a7a-0b7c2d1e5f60","resource":` +
		obs(`,"subject":{"reference":"Patient?identifier=http://x|1"}`) + `,"request":{"method":"POST","url":"Observation"}}]}`},
	{name: "absolute reference", doc: patient(`"managingOrganization":{"reference":"https://example.org/fhir/Organization/1/_history/2"}`)},
	{name: "history reference", doc: patient(`"managingOrganization":{"reference":"Organization/1/_history/2"}`)},
	{name: "urn oid reference", doc: patient(`"managingOrganization":{"reference":"urn:oid:1.2.3"}`)},
	// RFC 3986 3.5: any URI may carry a fragment (an IPS narrative link
	// names an element of a Bundle entry so).
	{name: "urn uuid with a fragment", doc: patient(`"implicitRules":"urn:uuid:8ce7db7b-9b9b-41ae-b1d7-3f2d1c728a13#x"`)},
	{name: "local reference", doc: patient(`"contained":[{"resourceType":"Organization","id":"o1","name":"x"}],"managingOrganization":{"reference":"#o1"}`)},
	{name: "contained refers to container", doc: patient(`"contained":[{"resourceType":"Observation","id":"o","status":"final","code":{"text":"x"},"subject":{"reference":"#"}}]`)},
	{name: "contained referenced by canonical", doc: `{"resourceType":"Questionnaire","status":"draft","contained":[{"resourceType":"ValueSet","id":"vs","status":"draft"}],"item":[{"linkId":"1","type":"choice","answerValueSet":"#vs"}]}`},
	{name: "safe narrative", doc: patient(`"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><a href=\"https://x.org\">a &amp; b &#169;</a></div>"}`)},
	{name: "narrative namespace in single quotes, other attributes", doc: patient(`"text":{"status":"generated","div":"<div class=\"a\" xmlns = 'http://www.w3.org/1999/xhtml' lang=\"en\">x</div>"}`)},
	{name: "narrative with comments, nested XHTML and a redundant default namespace", doc: patient(`"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><!-- n --><p xmlns=\"http://www.w3.org/1999/xhtml\">a<br/><img src=\"x.png\" alt=\"\"/></p></div> "}`)},
	{name: "safe styles", doc: patient(`"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p style=\"color: rgb(0,0,0); font-weight: bold\" title=\"data: see table\">x</p></div>"}`)},
	{name: "raster data image", doc: patient(`"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><img src=\"data:image/png;base64,iVBORw0KGgo=\" alt=\"chart\"/></div>"}`)},
	// txt-1: the basic HTML formatting elements R4 allows (the HL7
	// validator's list), all of them (p43 F5).
	{name: "narrative with every element R4 allows", doc: patient(`"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">` +
		`<h1>1</h1><h2>2</h2><h3>3</h3><h4>4</h4><h5>5</h5><h6>6</h6><p>a <span>s</span> <a href=\"#l\">l</a> <a name=\"l\">n</a> <b>b</b><br/><em>e</em><i>i</i>` +
		`<strong>s</strong><small>s</small><big>b</big><tt>t</tt><dfn>d</dfn><q>q</q><var>v</var><abbr title=\"t\">a</abbr><acronym title=\"t\">a</acronym>` +
		`<cite>c</cite><bdo dir=\"rtl\">b</bdo><kbd>k</kbd><sub>s</sub><sup>s</sup><code>c</code><samp>s</samp></p><blockquote><p>q</p></blockquote><hr/>` +
		`<address>a</address><ul><li>u</li></ul><ol><li>o</li></ol><dl><dt>t</dt><dd>d</dd></dl><pre>p</pre>` +
		`<table><caption>c</caption><colgroup><col/></colgroup><thead><tr><th>h</th></tr></thead><tfoot><tr><td>f</td></tr></tfoot><tbody><tr><td>d</td></tr></tbody></table>` +
		`<img src=\"x.png\" alt=\"x\" usemap=\"#m\"/><map name=\"m\"><area shape=\"rect\" coords=\"0,0,1,1\" href=\"#l\" alt=\"a\"/></map><div>d</div></div>"}`)},
	{name: "leap day", doc: patient(`"birthDate":"2000-02-29"`)},
	{name: "parameters resource", doc: `{"resourceType":"Parameters","parameter":[{"name":"p","resource":{"resourceType":"Patient","id":"x"}}]}`},
	{name: "same type as", as: "Patient", doc: `{"resourceType":"Patient"}`},

	// JSON level.
	{name: "syntax", doc: `{"resourceType":"Patient",}`, rule: "json-syntax"},
	{name: "trailing data", doc: `{"resourceType":"Patient"} {}`, rule: "json-syntax"},
	{name: "invalid utf8", doc: "{\"resourceType\":\"Patient\",\"gender\":\"m\xffale\"}", rule: "json-syntax"},
	{name: "lone surrogate", doc: `{"resourceType":"Patient","gender":"\ud800"}`, rule: "json-syntax"},
	{name: "comment", doc: `// c` + "\n" + `{"resourceType":"Patient"}`, rule: "json-syntax"},
	{name: "duplicate key", doc: patient(`"gender":"male","gender":"female"`), rule: "json-duplicate-key", expr: "Patient.gender"},
	{name: "duplicate escaped key", doc: patient(`"gender":"male","g\u0065nder":"female"`), rule: "json-duplicate-key", expr: "Patient.gender"},
	{name: "duplicate nested", doc: patient(`"name":[{"family":"a","family":"b"}]`), rule: "json-duplicate-key", expr: "Patient.name[0].family"},
	{name: "duplicate in unknown", doc: patient(`"foo":{"a":1,"a":2}`), rule: "json-duplicate-key", expr: "Patient", never: "foo"},
	{name: "duplicate unknown", doc: patient(`"name":[{"smith":1,"smith":2}]`), rule: "json-duplicate-key", expr: "Patient.name[0]", never: "smith"},
	{name: "duplicate resourceType", doc: `{"resourceType":"Patient","resourceType":"Patient"}`, rule: "json-duplicate-key", expr: "Patient.resourceType"},
	{name: "depth", doc: patient(`"extension":` + strings.Repeat("[", 150) + strings.Repeat("]", 150)), rule: "json-depth"},
	{name: "empty", doc: "", rule: "json-empty"},
	{name: "blank", doc: " \r\n\t", rule: "json-empty"},

	// Resource type.
	{name: "unknown type", doc: `{"resourceType":"Foo"}`, rule: "resource-type-unknown", never: "nearest"},
	// A misspelt type is told the type nearest to it, never repeated (a
	// beginner's review: "Bundel" got no hint).
	{name: "misspelt type", doc: `{"resourceType":"Bundel","type":"collection"}`, rule: "resource-type-unknown", msg: "the nearest resource type is 'Bundle'", never: "Bundel"},
	{name: "misspelt nested type", doc: `{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:0e6a2f0c-7f0e-4c3f-9a7a-0b7c2d1e5f60","resource":{"resourceType":"Pateint"}}]}`,
		rule: "resource-type-unknown", expr: "Bundle.entry[0].resource", msg: "the nearest resource type is 'Patient'", never: "Pateint"},
	{name: "abstract type", doc: `{"resourceType":"DomainResource"}`, rule: "resource-type-unknown"},
	{name: "no type", doc: `{"id":"x"}`, rule: "element-required"},
	{name: "type not string", doc: `{"resourceType":1}`, rule: "element-type"},
	{name: "not an object", doc: `[]`, rule: "element-type"},
	{name: "mismatch", as: "Observation", doc: `{"resourceType":"Patient"}`, rule: "resource-type-mismatch", expr: "Patient"},
	{name: "ValidateAs unknown", as: "Nope", doc: `{"resourceType":"Patient"}`, rule: "resource-type-unknown"},

	// Elements.
	// An unknown name is never repeated (docs/security.md: it may be
	// anything, a name or an MRN used as a key), lower case or not; a
	// likely misspelling is told the element it is nearest to.
	{name: "unknown", doc: patient(`"foo":1`), rule: "element-unknown", expr: "Patient", never: "foo"},
	{name: "unknown nested", doc: patient(`"name":[{"familyName":"x"}]`), rule: "element-unknown", expr: "Patient.name[0]", never: "familyName"},
	{name: "unknown lower-case name", doc: patient(`"name":[{"smith":"x"}],"mrn4711":1`), rule: "element-unknown", expr: "Patient.name[0]", never: "smith"},
	{name: "misspelt", doc: patient(`"gendr":"male"`), rule: "element-unknown", expr: "Patient", msg: "nearest element of Patient is 'gender'", never: "gendr"},
	{name: "misspelt choice", doc: obs(`,"valueQuantiy":{"value":1}`), rule: "element-unknown", expr: "Observation", msg: "'valueQuantity'", never: "Quantiy"},
	{name: "far from any", doc: patient(`"xyzzy":1`), rule: "element-unknown", expr: "Patient", never: "nearest"},
	{name: "unknown name hidden", doc: patient(`"John Smith":1`), rule: "element-unknown", expr: "Patient"},
	{name: "underscore on complex", doc: patient(`"_name":[{"id":"x"}]`), rule: "element-unknown", expr: "Patient._name"},
	{name: "underscore unknown inside", doc: patient(`"birthDate":"1970","_birthDate":{"foo":1}`), rule: "element-unknown", expr: "Patient.birthDate", never: "foo"},
	{name: "choice base name", doc: obs(`,"value":1`), rule: "element-unknown", expr: "Observation.value"},
	// ele-1: an element holds a value or children besides its id (a
	// conformance review: these were accepted and stored).
	{name: "ele-1 primitive extension with only an id", doc: patient(`"_gender":{"id":"a"}`), rule: "ele-1", expr: "Patient.gender"},
	{name: "ele-1 complex with only an id", doc: patient(`"name":[{"id":"n"}]`), rule: "ele-1", expr: "Patient.name[0]"},
	{name: "ele-1 choice with only an id", doc: obs(`,"valueCodeableConcept":{"id":"c"}`), rule: "ele-1", expr: "Observation.valueCodeableConcept"},
	{name: "ele-1 id beside a value", doc: patient(`"gender":"male","_gender":{"id":"a"}`)},
	{name: "ele-1 id beside children", doc: patient(`"name":[{"id":"n","family":"x"}]`)},
	{name: "string for boolean", doc: patient(`"active":"true"`), rule: "element-type", expr: "Patient.active"},
	{name: "number for string", doc: patient(`"gender":1`), rule: "element-type", expr: "Patient.gender"},
	{name: "string for object", doc: patient(`"name":["x"]`), rule: "element-type", expr: "Patient.name[0]"},
	{name: "string for integer", doc: `{"resourceType":"Basic","code":{"text":"x"},"extension":[{"url":"http://e","valuePositiveInt":"1"}]}`, rule: "element-type", expr: "Basic.extension[0].valuePositiveInt"},
	{name: "object for array", doc: patient(`"name":{"family":"x"}`), rule: "element-array", expr: "Patient.name"},
	{name: "array for single", doc: patient(`"gender":["male"]`), rule: "element-array", expr: "Patient.gender"},
	{name: "required", doc: `{"resourceType":"Observation","code":{"text":"x"}}`, rule: "element-required", expr: "Observation.status"},
	{name: "required choice", doc: `{"resourceType":"MedicationRequest","status":"active","intent":"order","subject":{"reference":"Patient/1"}}`, rule: "element-required", expr: "MedicationRequest.medication[x]"},
	{name: "required in backbone", doc: obs(`,"component":[{"valueString":"x"}]`), rule: "element-required", expr: "Observation.component[0].code"},
	{name: "two choices", doc: obs(`,"valueString":"a","valueBoolean":true`), rule: "choice-multiple", expr: "Observation.valueBoolean"},
	{name: "choice value and other extension", doc: obs(`,"valueString":"a","_valueBoolean":{"id":"x"}`), rule: "choice-multiple", expr: "Observation.valueBoolean"},
	{name: "empty string", doc: patient(`"gender":""`), rule: "value-empty", expr: "Patient.gender", msg: "a code must not be empty: leave the element out"},
	{name: "empty array", doc: patient(`"name":[]`), rule: "value-empty", expr: "Patient.name"},
	{name: "empty object", doc: patient(`"maritalStatus":{}`), rule: "value-empty", expr: "Patient.maritalStatus"},
	{name: "null", doc: patient(`"active":null`), rule: "value-empty", expr: "Patient.active"},
	{name: "null in complex array", doc: patient(`"name":[null]`), rule: "value-empty", expr: "Patient.name[0]"},
	{name: "null without extension", doc: patient(`"name":[{"given":["a",null]}]`), rule: "value-empty", expr: "Patient.name[0].given[1]"},
	{name: "extension sibling too long", doc: patient(`"name":[{"given":["a"],"_given":[null,{"id":"x"}]}]`), rule: "element-array", expr: "Patient.name[0].given[1]"},
	{name: "null in both", doc: patient(`"name":[{"given":["a",null],"_given":[{"id":"x"},null]}]`), rule: "value-empty", expr: "Patient.name[0].given[1]"},
	{name: "null extension without values", doc: patient(`"name":[{"_given":[null]}]`), rule: "value-empty", expr: "Patient.name[0].given[0]"},
	{name: "null extension beside no values", doc: patient(`"name":[{"_given":[{"id":"x"},null]}]`), rule: "value-empty", expr: "Patient.name[0].given[1]"},

	// Primitive formats.
	{name: "bad date", doc: patient(`"birthDate":"1970-02-30"`), rule: "primitive-format", expr: "Patient.birthDate", msg: "the day must be two digits and exist in that month", never: "1970"},
	{name: "not leap", doc: patient(`"birthDate":"1900-02-29"`), rule: "primitive-format", expr: "Patient.birthDate", msg: "exist in that month"},
	{name: "date with tz", doc: patient(`"birthDate":"1970-01-01Z"`), rule: "primitive-format", expr: "Patient.birthDate", msg: "a date has no time or time zone"},
	{name: "dateTime no tz", doc: patient(`"deceasedDateTime":"2020-01-01T10:00:00"`), rule: "primitive-format", expr: "Patient.deceasedDateTime", msg: "a time must have a time zone: add Z (UTC) or an offset such as -05:00", never: "2020"},
	{name: "dateTime 24h", doc: patient(`"deceasedDateTime":"2020-01-01T24:00:00Z"`), rule: "primitive-format", expr: "Patient.deceasedDateTime", msg: "hours 00 to 23, minutes 00 to 59, seconds 00 to 59 (60 for a leap second)"},
	{name: "dateTime no seconds", doc: patient(`"deceasedDateTime":"2020-01-01T10:00Z"`), rule: "primitive-format", expr: "Patient.deceasedDateTime", msg: "the time must have seconds (hh:mm:ss)"},
	{name: "instant partial", doc: obs(`,"issued":"2020-01-01"`), rule: "primitive-format", expr: "Observation.issued", msg: "an instant needs a time to the second and a time zone"},
	{name: "integer fraction", doc: `{"resourceType":"Basic","code":{"text":"x"},"extension":[{"url":"http://e","valueInteger":1.0}]}`, rule: "primitive-format", expr: "Basic.extension[0].valueInteger"},
	{name: "integer range", doc: `{"resourceType":"Basic","code":{"text":"x"},"extension":[{"url":"http://e","valueInteger":2147483648}]}`, rule: "primitive-format", expr: "Basic.extension[0].valueInteger"},
	{name: "positiveInt zero", doc: `{"resourceType":"Basic","code":{"text":"x"},"extension":[{"url":"http://e","valuePositiveInt":0}]}`, rule: "primitive-format", expr: "Basic.extension[0].valuePositiveInt"},
	{name: "decimal as string", doc: obs(`,"valueQuantity":{"value":"abc"}`), rule: "element-type", expr: "Observation.valueQuantity.value"},
	{name: "decimal infinite", doc: obs(`,"valueQuantity":{"value":1e999}`), rule: "decimal-out-of-range", expr: "Observation.valueQuantity.value"},
	{name: "decimal of 400 digits", doc: obs(`,"valueQuantity":{"value":12345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901}`), rule: "decimal-out-of-range", expr: "Observation.valueQuantity.value"},
	{name: "decimal of 400 fraction digits", doc: obs(`,"valueQuantity":{"value":0.2345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901}`), rule: "decimal-out-of-range", expr: "Observation.valueQuantity.value"},
	{name: "decimal too small", doc: obs(`,"valueQuantity":{"value":1e-400}`), rule: "decimal-out-of-range", expr: "Observation.valueQuantity.value"},
	{name: "decimal beyond the bound", doc: obs(`,"valueQuantity":{"value":2e300}`), rule: "decimal-out-of-range", expr: "Observation.valueQuantity.value"},
	{name: "decimal below the bound", doc: obs(`,"valueQuantity":{"value":-1e-301}`), rule: "decimal-out-of-range", expr: "Observation.valueQuantity.value"},
	{name: "decimal with more digits than a double", doc: obs(`,"valueQuantity":{"value":1.0000000000000000000001}`), rule: "decimal-out-of-range", expr: "Observation.valueQuantity.value"},
	{name: "integer beyond a double's digits", doc: obs(`,"valueQuantity":{"value":9007199254740993}`), rule: "decimal-out-of-range", expr: "Observation.valueQuantity.value"},
	{name: "decimal exponent too long", doc: obs(`,"valueQuantity":{"value":1e1234567}`), rule: "decimal-out-of-range", expr: "Observation.valueQuantity.value"},
	{name: "decimal string beyond range", doc: obs(`,"valueQuantity":{"value":"1e999"}`), rule: "decimal-out-of-range", expr: "Observation.valueQuantity.value"},
	{name: "bad id", doc: `{"resourceType":"Patient","id":"a_b"}`, rule: "primitive-format", expr: "Patient.id", msg: "an id holds only the letters", never: "a_b"},
	{name: "long id", doc: `{"resourceType":"Patient","id":"` + strings.Repeat("a", 65) + `"}`, rule: "primitive-format", expr: "Patient.id", msg: "at most 64 characters"},
	{name: "code spaces", doc: patient(`"gender":" male"`), rule: "primitive-format", expr: "Patient.gender", msg: "no leading or trailing whitespace"},
	{name: "control char", doc: patient(`"name":[{"family":"a\u0001b"}]`), rule: "primitive-format", expr: "Patient.name[0].family", msg: "no control characters other than tab"},
	{name: "uri space", doc: patient(`"implicitRules":"http://a b"`), rule: "primitive-format", expr: "Patient.implicitRules", msg: "holds no whitespace"},
	{name: "dateTime with a space", doc: patient(`"deceasedDateTime":"2020-01-01 10:00:00Z"`), rule: "primitive-format", expr: "Patient.deceasedDateTime", msg: "separated from the date by T, not a space"},
	{name: "date as day first", doc: patient(`"birthDate":"01/03/1990"`), rule: "primitive-format", expr: "Patient.birthDate", msg: "begin with a four-digit year", never: "1990"},
	{name: "date with a time", doc: patient(`"birthDate":"1990-01-01T00:00:00Z"`), rule: "primitive-format", expr: "Patient.birthDate", msg: "a time belongs in a dateTime or an instant"},
	{name: "month 13", doc: patient(`"birthDate":"1990-13"`), rule: "primitive-format", expr: "Patient.birthDate", msg: "the month must be two digits, 01 to 12"},
	{name: "zone beyond 14 hours", doc: patient(`"deceasedDateTime":"2020-01-01T10:00:00+15:00"`), rule: "primitive-format", expr: "Patient.deceasedDateTime", msg: "Z or an offset ±hh:mm, at most ±14:00"},
	{name: "text after the zone", doc: patient(`"deceasedDateTime":"2020-01-01T10:00:00Zx"`), rule: "primitive-format", expr: "Patient.deceasedDateTime", msg: "nothing may follow the time zone"},
	{name: "lower-case t", doc: patient(`"deceasedDateTime":"2020-01-01t10:00:00Z"`), rule: "primitive-format", expr: "Patient.deceasedDateTime", msg: "the T between the date and the time is upper case"},
	{name: "lower-case z", doc: patient(`"deceasedDateTime":"2020-01-01T10:00:00z"`), rule: "primitive-format", expr: "Patient.deceasedDateTime", msg: "the Z of UTC is upper case"},
	{name: "code in another case", doc: patient(`"gender":"Male"`), rule: "binding-required", expr: "Patient.gender", msg: "its codes are female, male, other, unknown; codes are case-sensitive: the code differs from 'male' only in case", never: "Male"},
	{name: "coding in another case", doc: `{"resourceType":"Basic","code":{"text":"x"},"extension":[{"url":"http://e","valueCoding":{"system":"http://hl7.org/fhir/administrative-gender","code":"x"}}]}`},
	{name: "misspelt reference type", doc: obs(`,"subject":{"reference":"Patinet/123"}`), rule: "reference-format", expr: "Observation.subject.reference", msg: "the nearest resource type is 'Patient'", never: "Patinet"},
	{name: "empty instant", doc: obs(`,"issued":""`), rule: "value-empty", expr: "Observation.issued", msg: "an instant must not be empty"},
	{name: "fraction without digits", doc: patient(`"deceasedDateTime":"2020-01-01T10:00:00.Z"`), rule: "primitive-format", expr: "Patient.deceasedDateTime", msg: "a fraction of a second needs digits after the '.'"},
	{name: "time of a month", doc: patient(`"deceasedDateTime":"2020-01T10:00:00Z"`), rule: "primitive-format", expr: "Patient.deceasedDateTime", msg: "a time needs the whole date before it"},
	{name: "bad urn uuid", doc: patient(`"implicitRules":"urn:uuid:ABC"`), rule: "primitive-format", expr: "Patient.implicitRules", msg: "lower-case UUID"},
	{name: "uuid uppercase", doc: patient(`"implicitRules":"urn:uuid:4E6A2F0C-7F0E-4C3F-9A7A-0B7C2D1E5F60"`), rule: "primitive-format", expr: "Patient.implicitRules"},
	{name: "uuid bad before a fragment", doc: patient(`"implicitRules":"urn:uuid:nope#x"`), rule: "primitive-format", expr: "Patient.implicitRules"},
	{name: "bad base64", doc: patient(`"photo":[{"contentType":"image/png","data":"%%%"}]`), rule: "primitive-format", expr: "Patient.photo[0].data"},
	{name: "bad time", doc: `{"resourceType":"Basic","code":{"text":"x"},"extension":[{"url":"http://e","valueTime":"12:05"}]}`, rule: "primitive-format", expr: "Basic.extension[0].valueTime"},
	{name: "bad oid", doc: `{"resourceType":"Basic","code":{"text":"x"},"extension":[{"url":"http://e","valueOid":"urn:oid:1.02"}]}`, rule: "primitive-format", expr: "Basic.extension[0].valueOid"},
	{name: "narrative empty div (txt-2)", doc: patient(`"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"/>"}`), rule: "primitive-format", expr: "Patient.text.div"},
	{name: "narrative whitespace-only div (txt-2)", doc: patient(`"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">   </div>"}`), rule: "primitive-format", expr: "Patient.text.div"},
	{name: "narrative two root divs", doc: patient(`"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">a</div><div xmlns=\"http://www.w3.org/1999/xhtml\">b</div>"}`), rule: "primitive-format", expr: "Patient.text.div"},
	{name: "narrative mismatched end tag", doc: patient(`"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><b>x</i></div>"}`), rule: "primitive-format", expr: "Patient.text.div"},
	{name: "narrative unclosed element", doc: patient(`"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>x</div>"}`), rule: "primitive-format", expr: "Patient.text.div"},
	{name: "narrative stray end tag", doc: patient(`"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">a</div></div>"}`), rule: "primitive-format", expr: "Patient.text.div"},
	{name: "narrative attribute twice", doc: patient(`"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p a=\"1\" a=\"2\">x</p></div>"}`), rule: "primitive-format", expr: "Patient.text.div"},
	{name: "narrative body element", doc: patient(`"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><body>b</body></div>"}`), rule: "primitive-format", expr: "Patient.text.div"},
	{name: "narrative element in another namespace", doc: patient(`"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p xmlns=\"urn:other\">x</p></div>"}`), rule: "primitive-format", expr: "Patient.text.div"},
	{name: "narrative script under an XHTML prefix", doc: patient(`"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><x:script xmlns:x=\"http://www.w3.org/1999/xhtml\">alert(1)</x:script></div>"}`), rule: "xhtml-unsafe", expr: "Patient.text.div"},
	{name: "narrative iframe under a prefix", doc: patient(`"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><h:iframe xmlns:h=\"http://www.w3.org/1999/xhtml\" src=\"http://e\"/></div>"}`), rule: "xhtml-unsafe", expr: "Patient.text.div"},
	{name: "narrative svg script under prefixes", doc: patient(`"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><svg:svg xmlns:svg=\"http://www.w3.org/2000/svg\"><svg:script>1</svg:script></svg:svg></div>"}`), rule: "xhtml-unsafe", expr: "Patient.text.div"},
	{name: "narrative event handler under a prefix", doc: patient(`"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p xmlns:x=\"urn:x\" x:onclick=\"alert(1)\">x</p></div>"}`), rule: "xhtml-unsafe", expr: "Patient.text.div"},
	{name: "narrative data URL under a prefixed href", doc: patient(`"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><a xmlns:x=\"urn:x\" x:href=\"data:text/html,x\">x</a></div>"}`), rule: "xhtml-unsafe", expr: "Patient.text.div"},
	// An element outside txt-1's list, or not in XHTML's lower case, is
	// refused at text.div (p43 F5).
	{name: "narrative unknown element", doc: patient(`"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><SECRETTAG/></div>"}`), rule: "primitive-format", expr: "Patient.text.div"},
	{name: "narrative made-up element", doc: patient(`"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><foo>x</foo></div>"}`), rule: "primitive-format", expr: "Patient.text.div"},
	{name: "narrative upper-case P", doc: patient(`"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><P>x</P></div>"}`), rule: "primitive-format", expr: "Patient.text.div"},
	{name: "narrative mixed-case Table", doc: patient(`"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><Table><tr><td>x</td></tr></Table></div>"}`), rule: "primitive-format", expr: "Patient.text.div"},
	{name: "narrative HTML5 element", doc: patient(`"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><section>x</section></div>"}`), rule: "primitive-format", expr: "Patient.text.div"},
	{name: "narrative font element", doc: patient(`"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><font>x</font></div>"}`), rule: "primitive-format", expr: "Patient.text.div"},
	{name: "narrative title element", doc: patient(`"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><title>x</title></div>"}`), rule: "primitive-format", expr: "Patient.text.div"},
	{name: "narrative unknown element in a contained resource", doc: patient(`"contained":[{"resourceType":"Organization","id":"o1","name":"o","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><x-y>x</x-y></div>"}}],"managingOrganization":{"reference":"#o1"}`), rule: "primitive-format", expr: "Patient.contained[0].ofType(Organization).text.div"},
	// The deny-list still names what is unsafe, before the allow-list.
	{name: "narrative script", doc: patient(`"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><script>1</script></div>"}`), rule: "xhtml-unsafe", expr: "Patient.text.div"},
	{name: "narrative upper-case SCRIPT", doc: patient(`"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><SCRIPT>1</SCRIPT></div>"}`), rule: "xhtml-unsafe", expr: "Patient.text.div"},
	{name: "narrative not div", doc: patient(`"text":{"status":"generated","div":"<p>x</p>"}`), rule: "primitive-format", expr: "Patient.text.div"},
	{name: "narrative without namespace", doc: patient(`"text":{"status":"generated","div":"<div>no namespace</div>"}`), rule: "primitive-format", expr: "Patient.text.div"},
	{name: "narrative with another namespace", doc: patient(`"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml/\">x</div>"}`), rule: "primitive-format", expr: "Patient.text.div"},
	{name: "narrative namespace only in a child", doc: patient(`"text":{"status":"generated","div":"<div><p xmlns=\"http://www.w3.org/1999/xhtml\">x</p></div>"}`), rule: "primitive-format", expr: "Patient.text.div"},
	{name: "narrative namespace as a prefix", doc: patient(`"text":{"status":"generated","div":"<div xmlns:h=\"http://www.w3.org/1999/xhtml\">x</div>"}`), rule: "primitive-format", expr: "Patient.text.div"},
	{name: "narrative namespace in another attribute's value", doc: patient(`"text":{"status":"generated","div":"<div title=\"xmlns=&quot;http://www.w3.org/1999/xhtml&quot;\">x</div>"}`), rule: "primitive-format", expr: "Patient.text.div"},
	{name: "narrative upper-case DIV", doc: patient(`"text":{"status":"generated","div":"<DIV xmlns=\"http://www.w3.org/1999/xhtml\">x</DIV>"}`), rule: "primitive-format", expr: "Patient.text.div"},
	{name: "contained narrative without namespace", doc: patient(`"contained":[{"resourceType":"Organization","id":"o1","text":{"status":"generated","div":"<div>x</div>"}}],"managingOrganization":{"reference":"#o1"}`), rule: "primitive-format", expr: "Patient.contained[0].ofType(Organization).text.div"},
	{name: "narrative entity", doc: patient(`"text":{"status":"generated","div":"<div>&nbsp;</div>"}`), rule: "primitive-format", expr: "Patient.text.div"},

	// Bindings.
	{name: "code binding", doc: patient(`"gender":"unknownx"`), rule: "binding-required", expr: "Patient.gender"},
	{name: "code binding in backbone", doc: patient(`"name":[{"use":"bogus"}]`), rule: "binding-required", expr: "Patient.name[0].use"},
	{name: "codeable concept binding", doc: `{"resourceType":"AllergyIntolerance","patient":{"reference":"Patient/1"},"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical","code":"bogus"}]}}`,
		rule: "binding-required", expr: "AllergyIntolerance.clinicalStatus.coding[0]"},
	{name: "codeable concept without coding", doc: `{"resourceType":"AllergyIntolerance","patient":{"reference":"Patient/1"},"clinicalStatus":{"text":"active"}}`,
		rule: "binding-required", expr: "AllergyIntolerance.clinicalStatus"},
	{name: "bundle type", doc: `{"resourceType":"Bundle","type":"bogus"}`, rule: "binding-required", expr: "Bundle.type"},
	{name: "bundle type missing", doc: `{"resourceType":"Bundle","id":"b"}`, rule: "element-required", expr: "Bundle.type"},

	// References.
	{name: "unknown type reference", doc: patient(`"managingOrganization":{"reference":"Foo/1"}`), rule: "reference-format", expr: "Patient.managingOrganization.reference"},
	{name: "bad id reference", doc: patient(`"managingOrganization":{"reference":"Organization/a b"}`), rule: "reference-format", expr: "Patient.managingOrganization.reference"},
	{name: "bare reference", doc: patient(`"managingOrganization":{"reference":"Organization"}`), rule: "reference-format", expr: "Patient.managingOrganization.reference"},
	{name: "conditional outside bundle", doc: patient(`"managingOrganization":{"reference":"Organization?identifier=x"}`), rule: "reference-format", expr: "Patient.managingOrganization.reference"},
	{name: "bad local reference", doc: patient(`"managingOrganization":{"reference":"#a b"}`), rule: "reference-format", expr: "Patient.managingOrganization.reference"},
	{name: "bad oid reference", doc: patient(`"managingOrganization":{"reference":"urn:oid:9.1"}`), rule: "reference-format", expr: "Patient.managingOrganization.reference"},
	{name: "fullUrl versioned", doc: `{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"http://x.org/fhir/Patient/1/_history/2","resource":{"resourceType":"Patient","id":"1"}}]}`, rule: "bdl-8", expr: "Bundle.entry[0].fullUrl"},
	{name: "fullUrl relative", doc: `{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"Patient/1","resource":{"resourceType":"Patient"}}]}`, rule: "reference-format", expr: "Bundle.entry[0].fullUrl"},

	// Narrative safety.
	{name: "script", doc: patient(`"text":{"status":"generated","div":"<div><SCRIPT>x</SCRIPT></div>"}`), rule: "xhtml-unsafe", expr: "Patient.text.div"},
	{name: "event handler", doc: patient(`"text":{"status":"generated","div":"<div><img src=\"a.png\" OnError=\"x()\"/></div>"}`), rule: "xhtml-unsafe", expr: "Patient.text.div"},
	{name: "javascript url", doc: patient(`"text":{"status":"generated","div":"<div><a href=\" JavaScript:x()\">a</a></div>"}`), rule: "xhtml-unsafe", expr: "Patient.text.div"},
	{name: "obfuscated javascript url", doc: patient(`"text":{"status":"generated","div":"<div><a href=\"jav&#x61;script&#58;x()\">a</a></div>"}`), rule: "xhtml-unsafe", expr: "Patient.text.div"},
	{name: "iframe", doc: patient(`"text":{"status":"generated","div":"<div><iframe src=\"x\"></iframe></div>"}`), rule: "xhtml-unsafe", expr: "Patient.text.div"},
	{name: "style url javascript", doc: patient(`"text":{"status":"generated","div":"<div><p style=\"background:url(javascript:alert(1))\">x</p></div>"}`), rule: "xhtml-unsafe", expr: "Patient.text.div"},
	{name: "style url remote", doc: patient(`"text":{"status":"generated","div":"<div><p style=\"background-image: URL( https://x.org/a.png )\">x</p></div>"}`), rule: "xhtml-unsafe", expr: "Patient.text.div"},
	{name: "style url as char refs", doc: patient(`"text":{"status":"generated","div":"<div><p style=\"background:u&#114;l(x)\">x</p></div>"}`), rule: "xhtml-unsafe", expr: "Patient.text.div"},
	{name: "style css escape", doc: patient(`"text":{"status":"generated","div":"<div><p style=\"background:\\\\75 rl(x)\">x</p></div>"}`), rule: "xhtml-unsafe", expr: "Patient.text.div"},
	{name: "style expression", doc: patient(`"text":{"status":"generated","div":"<div><p style=\"width:expression(alert(1))\">x</p></div>"}`), rule: "xhtml-unsafe", expr: "Patient.text.div"},
	{name: "style import", doc: patient(`"text":{"status":"generated","div":"<div><p style=\"@import x\">x</p></div>"}`), rule: "xhtml-unsafe", expr: "Patient.text.div"},
	{name: "style comment", doc: patient(`"text":{"status":"generated","div":"<div><p style=\"background:u/**/rl(x)\">x</p></div>"}`), rule: "xhtml-unsafe", expr: "Patient.text.div"},
	{name: "data html link", doc: patient(`"text":{"status":"generated","div":"<div><a href=\"data:text/html;base64,PHNjcmlwdD4=\">a</a></div>"}`), rule: "xhtml-unsafe", expr: "Patient.text.div"},
	{name: "data link obfuscated", doc: patient(`"text":{"status":"generated","div":"<div><a href=\" DATA&#58;text/html,x\">a</a></div>"}`), rule: "xhtml-unsafe", expr: "Patient.text.div"},
	{name: "data svg image", doc: patient(`"text":{"status":"generated","div":"<div><img src=\"data:image/svg+xml;base64,PHN2Zz4=\"/></div>"}`), rule: "xhtml-unsafe", expr: "Patient.text.div"},
	{name: "data image in a link", doc: patient(`"text":{"status":"generated","div":"<div><a href=\"data:image/png;base64,iVBO\">a</a></div>"}`), rule: "xhtml-unsafe", expr: "Patient.text.div"},
	{name: "javascript in another attribute", doc: patient(`"text":{"status":"generated","div":"<div><a title=\"x\" cite=\"javascript:x\">a</a></div>"}`), rule: "xhtml-unsafe", expr: "Patient.text.div"},
	{name: "vbscript url", doc: patient(`"text":{"status":"generated","div":"<div><a href=\"vbscript:x\">a</a></div>"}`), rule: "xhtml-unsafe", expr: "Patient.text.div"},
	{name: "unquoted event attribute", doc: patient(`"text":{"status":"generated","div":"<div><b onmouseover=x>a</b></div>"}`), rule: "xhtml-unsafe", expr: "Patient.text.div"},

	// Nested resources.
	{name: "bundle entry", doc: `{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:0e6a2f0c-7f0e-4c3f-9a7a-0b7c2d1e5f60","resource":{"resourceType":"Patient"}},` +
		`{"fullUrl":"urn:uuid:1e6a2f0c-7f0e-4c3f-9a7a-0b7c2d1e5f60","resource":{"resourceType":"Observation","code":{"text":"x"}}}]}`,
		rule: "element-required", expr: "Bundle.entry[1].resource.ofType(Observation).status"},
	{name: "contained", doc: patient(`"contained":[{"resourceType":"Organization","id":"o","nam":"x"}],"managingOrganization":{"reference":"#o"}`),
		rule: "element-unknown", expr: "Patient.contained[0].ofType(Organization)", msg: "nearest element of Organization is 'name'"},
	{name: "parameters resource", doc: `{"resourceType":"Parameters","parameter":[{"name":"p","resource":{"resourceType":"Patient","gender":"x"}}]}`,
		rule: "binding-required", expr: "Parameters.parameter[0].resource.ofType(Patient).gender"},
	{name: "nested part", doc: `{"resourceType":"Parameters","parameter":[{"name":"p","part":[{"name":"q","valueBoolean":"yes"}]}]}`,
		rule: "element-type", expr: "Parameters.parameter[0].part[0].valueBoolean"},
	{name: "nested unknown type", doc: `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Foo"}}]}`,
		rule: "resource-type-unknown", expr: "Bundle.entry[0].resource"},
	{name: "nested no type", doc: `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"id":"x"}}]}`,
		rule: "element-required", expr: "Bundle.entry[0].resource"},

	// Invariants.
	{name: "ext-1 both", doc: patient(`"extension":[{"url":"http://e","valueString":"a","extension":[` + ext + `]}]`), rule: "ext-1", expr: "Patient.extension[0]"},
	{name: "ext-1 neither", doc: patient(`"extension":[{"url":"http://e"}]`), rule: "ext-1", expr: "Patient.extension[0]"},
	{name: "extension url", doc: patient(`"extension":[{"valueString":"a"}]`), rule: "element-required", expr: "Patient.extension[0].url"},
	{name: "qty-3", doc: obs(`,"valueQuantity":{"value":1,"code":"mg"}`), rule: "qty-3", expr: "Observation.valueQuantity"},
	{name: "obs-6", doc: obs(`,"valueString":"a","dataAbsentReason":{"text":"x"}`), rule: "obs-6", expr: "Observation"},
	{name: "obs-7", doc: `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"1-8"}]},"valueString":"a","component":[{"code":{"coding":[{"system":"http://loinc.org","code":"1-8"}]},"valueString":"b"}]}`,
		rule: "obs-7", expr: "Observation.component[0]"},
	{name: "per-1", doc: patient(`"name":[{"period":{"start":"2020-02-01","end":"2020-01-01"}}]`), rule: "per-1", expr: "Patient.name[0].period"},
	{name: "per-1 mixed precision", doc: patient(`"name":[{"period":{"start":"2023-06-22","end":"2023-06-21T06:20:00Z"}}]`), rule: "per-1", expr: "Patient.name[0].period"},
	{name: "bdl-7", doc: `{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"http://x/Patient/1","resource":{"resourceType":"Patient"}},{"fullUrl":"http://x/Patient/1","resource":{"resourceType":"Patient"}}]}`,
		rule: "bdl-7", expr: "Bundle.entry[1]"},
	{name: "bdl-3", doc: `{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"http://x/Patient/1","resource":{"resourceType":"Patient"}}]}`,
		rule: "bdl-3", expr: "Bundle.entry[0]"},
	{name: "bdl-1", doc: `{"resourceType":"Bundle","type":"collection","total":1}`, rule: "bdl-1", expr: "Bundle.total"},
	{name: "bdl-11", doc: `{"resourceType":"Bundle","type":"document","identifier":{"system":"http://x","value":"1"},"timestamp":"2020-01-01T00:00:00Z","entry":[{"fullUrl":"http://x/Patient/1","resource":{"resourceType":"Patient"}}]}`,
		rule: "bdl-11", expr: "Bundle"},
	{name: "ref-1", doc: patient(`"managingOrganization":{"reference":"#missing"}`), rule: "ref-1", expr: "Patient.managingOrganization.reference"},
	{name: "dom-3", doc: patient(`"contained":[{"resourceType":"Organization","id":"o"}]`), rule: "dom-3", expr: "Patient.contained[0].ofType(Organization)"},
	{name: "dom-2", doc: patient(`"contained":[{"resourceType":"Organization","id":"o","contained":[{"resourceType":"Organization","id":"p"}]}],"managingOrganization":{"reference":"#o"}`),
		rule: "dom-2", expr: "Patient.contained[0].ofType(Organization).contained"},
	{name: "dom-4", doc: patient(`"contained":[{"resourceType":"Organization","id":"o","meta":{"versionId":"1"}}],"managingOrganization":{"reference":"#o"}`),
		rule: "dom-4", expr: "Patient.contained[0].ofType(Organization).meta"},
	{name: "que-12", doc: `{"resourceType":"Questionnaire","status":"draft","item":[{"linkId":"1","type":"string","enableWhen":[{"question":"a","operator":"exists","answerBoolean":true},{"question":"b","operator":"exists","answerBoolean":true}]}]}`,
		rule: "que-12", expr: "Questionnaire.item[0]"},
	{name: "attachment size", doc: patient(`"photo":[{"contentType":"image/png","data":"aGVsbG8=","size":4}]`), rule: "attachment-size", expr: "Patient.photo[0]"},

	// Reference targets (R4's type.targetProfile; probe p11 F3).
	{name: "subject is a Patient", doc: obs(`,"subject":{"reference":"Patient/1","type":"Patient"}`)},
	{name: "subject is a Group by absolute URL", doc: obs(`,"subject":{"reference":"https://ehr.example.org/fhir/Group/7/_history/2"}`)},
	{name: "absolute URL without Type/id", doc: obs(`,"subject":{"reference":"https://ehr.example.org/people?id=7"}`)},
	{name: "subject by urn:uuid", doc: obs(`,"subject":{"reference":"urn:uuid:0e6a2f0c-7f0e-4c3f-9a7a-0b7c2d1e5f60"}`)},
	{name: "subject by identifier only", doc: obs(`,"subject":{"identifier":{"system":"http://x","value":"1"},"type":"Patient"}`)},
	{name: "type given as its definition URL", doc: obs(`,"subject":{"reference":"Patient/1","type":"http://hl7.org/fhir/StructureDefinition/Patient"}`)},
	{name: "any resource target", doc: `{"resourceType":"Provenance","recorded":"2020-01-01T00:00:00Z","target":[{"reference":"Medication/1"}],"agent":[{"who":{"reference":"Device/d"}}]}`},
	{name: "subject is a Medication", doc: obs(`,"subject":{"reference":"Medication/1"}`), rule: "reference-target", expr: "Observation.subject.reference"},
	{name: "subject is a Medication by absolute URL", doc: obs(`,"subject":{"reference":"https://ehr.example.org/fhir/Medication/1/_history/2"}`),
		rule: "reference-target", expr: "Observation.subject.reference"},
	{name: "performer is an Observation", doc: obs(`,"performer":[{"reference":"Practitioner/1"},{"reference":"Observation/2"}]`),
		rule: "reference-target", expr: "Observation.performer[1].reference"},
	{name: "general practitioner is an Observation", doc: patient(`"generalPractitioner":[{"reference":"Observation/1"}]`),
		rule: "reference-target", expr: "Patient.generalPractitioner[0].reference"},
	{name: "type not allowed", doc: patient(`"managingOrganization":{"identifier":{"value":"x"},"type":"Patient"}`),
		rule: "reference-target", expr: "Patient.managingOrganization.type"},
	{name: "type and reference disagree", doc: obs(`,"subject":{"reference":"Patient/1","type":"Group"}`),
		rule: "reference-target", expr: "Observation.subject.type"},
	{name: "backbone element target", doc: `{"resourceType":"Account","status":"active","coverage":[{"coverage":{"reference":"Patient/1"}}]}`,
		rule: "reference-target", expr: "Account.coverage[0].coverage.reference"},
	{name: "choice element target", doc: `{"resourceType":"MedicationRequest","status":"active","intent":"order","subject":{"reference":"Patient/1"},"medicationReference":{"reference":"Patient/1"}}`,
		rule: "reference-target", expr: "MedicationRequest.medicationReference.reference"},
	{name: "conditional reference to a type not allowed", doc: `{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:0e6a2f0c-7f0e-4c3f-9a7a-0b7c2d1e5f60","resource":` +
		obs(`,"subject":{"reference":"Medication?code=x"}`) + `,"request":{"method":"POST","url":"Observation"}}]}`,
		rule: "reference-target", expr: "Bundle.entry[0].resource.ofType(Observation).subject.reference"},
}

func TestRules(t *testing.T) {
	v := testValidator()
	for _, c := range ruleCases {
		t.Run(c.name, func(t *testing.T) {
			var res *Result
			if c.as != "" {
				res = v.ValidateAs([]byte(c.doc), c.as)
			} else {
				res = v.Validate([]byte(c.doc))
			}
			if c.rule == "" {
				if !res.Valid() {
					t.Fatalf("want valid, got %+v", res.Issues)
				}
				return
			}
			if res.Valid() {
				t.Fatalf("want rule %s, got valid (%+v)", c.rule, res.Issues)
			}
			for _, is := range res.Issues {
				if c.never != "" && (strings.Contains(is.Message, c.never) || strings.Contains(is.Expression, c.never)) {
					t.Errorf("issue repeats %q: %+v", c.never, is)
				}
				if is.Rule == c.rule && (c.expr == "" || is.Expression == c.expr) && strings.Contains(is.Message, c.msg) {
					if is.Code == "" || is.Message == "" {
						t.Errorf("issue lacks code or message: %+v", is)
					}
					return
				}
			}
			t.Fatalf("want %s at %q, got %+v", c.rule, c.expr, res.Issues)
		})
	}
}

func TestDeepNesting(t *testing.T) {
	const n = 100000
	for _, open := range []string{"[", `{"a":`} {
		close := "]"
		if open != "[" {
			close = "}"
		}
		doc := patient(`"extension":` + strings.Repeat(open, n) + "1" + strings.Repeat(close, n))
		res := testValidator().Validate([]byte(doc))
		if len(res.Issues) != 1 || res.Issues[0].Rule != "json-depth" {
			t.Errorf("%s: want a single json-depth issue, got %+v", open, res.Issues)
		}
	}
	// The limit is configurable.
	doc := patient(`"extension":[{"url":"http://e","extension":[{"url":"http://e","valueString":"x"}]}]`)
	if r := New(Options{MaxDepth: 4}).Validate([]byte(doc)); r.Valid() || r.Issues[0].Rule != "json-depth" {
		t.Errorf("MaxDepth 4: want json-depth, got %+v", r.Issues)
	}
	if r := New(Options{MaxDepth: 5}).Validate([]byte(doc)); !r.Valid() {
		t.Errorf("MaxDepth 5: want valid, got %+v", r.Issues)
	}
}

func TestIssueCap(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"resourceType":"Patient"`)
	for i := range 500 {
		fmt.Fprintf(&b, `,"x%d":1`, i)
	}
	b.WriteString("}")
	res := testValidator().Validate([]byte(b.String()))
	if len(res.Issues) != MaxIssues+1 {
		t.Fatalf("want %d issues, got %d", MaxIssues+1, len(res.Issues))
	}
	if last := res.Issues[len(res.Issues)-1]; last.Rule != "too-costly" || last.Code != "too-costly" {
		t.Errorf("last issue: %+v", last)
	}
}

// TestNoPHIInIssues checks that values and odd property names from the
// document never appear in issue text.
func TestNoPHIInIssues(t *testing.T) {
	const secret = "SECRETPHI"
	docs := []string{
		patient(`"gender":"SECRETPHI","birthDate":"SECRETPHI","active":"SECRETPHI","id":"SECRETPHI"`),
		patient(`"SECRETPHI":1,"name":[{"SECRETPHI x":"y","family":["SECRETPHI"]}]`),
		patient(`"managingOrganization":{"reference":"SECRETPHI/1"},"text":{"status":"generated","div":"<div><script>SECRETPHI</script></div>"}`),
		patient(`"gender":"male","gender":"SECRETPHI","SECRETPHI":1,"SECRETPHI":2`),
		patient(`"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><SECRETPHI>x</SECRETPHI></div>"}`),
		`{"resourceType":"SECRETPHI"}`,
		`{"resourceType":"Patient","name":[{"text":"SECRETPHI"}],}`,
		`{"resourceType":"Bundle","type":"SECRETPHI","entry":[{"fullUrl":"SECRETPHI","resource":{"resourceType":"SECRETPHI"}}]}`,
	}
	v := testValidator()
	for _, d := range docs {
		res := v.Validate([]byte(d))
		if res.Valid() {
			t.Errorf("document unexpectedly valid: %s", d)
		}
		for _, is := range res.Issues {
			if strings.Contains(is.Message, secret) || strings.Contains(is.Expression, secret) {
				t.Errorf("issue leaks document content: %+v", is)
			}
		}
	}
}

func TestResourceTypes(t *testing.T) {
	types := ResourceTypes()
	if len(types) != 146 || !slices.IsSorted(types) {
		t.Fatalf("want 146 sorted types, got %d", len(types))
	}
	v := testValidator()
	for _, name := range types {
		if !v.KnownType(name) {
			t.Errorf("%s not known", name)
		}
	}
	for _, name := range []string{"", "Resource", "DomainResource", "patient", "Quantity"} {
		if v.KnownType(name) {
			t.Errorf("%q should not be a resource type", name)
		}
	}
	types[0] = "changed"
	if ResourceTypes()[0] != "Account" {
		t.Error("ResourceTypes returns shared state")
	}
	if skippedRequiredBindings != 5 {
		t.Errorf("skipped required bindings: %d", skippedRequiredBindings)
	}
}

func TestConcurrentUse(t *testing.T) {
	v := New(Options{})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				c := ruleCases[(g*50+i)%len(ruleCases)]
				r1 := v.Validate([]byte(c.doc))
				r2 := v.Validate([]byte(c.doc))
				if fmt.Sprint(r1.Issues) != fmt.Sprint(r2.Issues) {
					t.Errorf("%s: results differ between runs", c.name)
				}
			}
		}()
	}
	wg.Wait()
}

// TestWarnings covers what the HL7 validator accepts but this package
// flags: the document stays valid, with a warning.
func TestWarnings(t *testing.T) {
	cases := []ruleCase{
		{name: "decimal as string", doc: obs(`,"valueQuantity":{"value":"1.5"}`), rule: "element-type", expr: "Observation.valueQuantity.value"},
		{name: "malformed urn:uuid", doc: patient(`"managingOrganization":{"reference":"urn:uuid:1234-X"}`), rule: "reference-format", expr: "Patient.managingOrganization.reference"},
		{name: "code only as extension", doc: patient(`"_gender":{"extension":[` + ext + `]}`), rule: "binding-required", expr: "Patient.gender"},
	}
	v := testValidator()
	for _, c := range cases {
		res := v.Validate([]byte(c.doc))
		if !res.Valid() {
			t.Errorf("%s: want valid, got %+v", c.name, res.Issues)
			continue
		}
		if len(res.Issues) != 1 || res.Issues[0].Severity != SeverityWarning || res.Issues[0].Rule != c.rule || res.Issues[0].Expression != c.expr {
			t.Errorf("%s: want one %s warning at %s, got %+v", c.name, c.rule, c.expr, res.Issues)
		}
	}
}

// TestDecimalStringStored: a decimal written as a JSON string is only a
// warning for Validate and ValidateAs (the HL7 validator's cs-order-prop-r4
// case is valid), but ValidateDecoded, whose result is stored and served,
// refuses it with element-type at the element.
func TestDecimalStringStored(t *testing.T) {
	cases := []struct{ name, doc, typ, expr string }{
		{"quantity", obs(`,"valueQuantity":{"value":"1.50","unit":"mg"}`), "Observation", "Observation.valueQuantity.value"},
		{"extension", patient(`"extension":[{"url":"http://e","valueDecimal":"2"}]`), "Patient", "Patient.extension[0].valueDecimal"},
		{"in a bundle entry", `{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:0e6a2f0c-7f0e-4c3f-9a7a-0b7c2d1e5f60","resource":` +
			obs(`,"valueQuantity":{"value":"-0.5"}`) + `}]}`, "Bundle", "Bundle.entry[0].resource.ofType(Observation).valueQuantity.value"},
	}
	v := testValidator()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if res := v.ValidateAs([]byte(c.doc), c.typ); !res.Valid() {
				t.Errorf("ValidateAs: want valid with a warning, got %+v", res.Issues)
			}
			res, decoded := v.ValidateDecoded([]byte(c.doc), c.typ)
			if res.Valid() || decoded != nil {
				t.Fatalf("ValidateDecoded = valid (%v), want an element-type error", decoded)
			}
			if is := res.Issues[0]; len(res.Issues) != 1 || is.Severity != SeverityError || is.Rule != "element-type" || is.Expression != c.expr {
				t.Errorf("ValidateDecoded issues = %+v, want one element-type error at %s", res.Issues, c.expr)
			}
		})
	}
}

// TestNativeRecordAdvice: a clinic's native record (a source and a
// patient, no resourceType) sent to be validated as FHIR is told how to
// check it (p45 F3); another document without a resourceType is not.
func TestNativeRecordAdvice(t *testing.T) {
	v := testValidator()
	for _, c := range []struct {
		doc    string
		advice bool
	}{
		{`{"source":{"system":"s","recordId":"r","version":"1"},"patient":{"id":"p"},"measuredAt":"2026-03-10T09:15:00Z"}`, true},
		{`{"id":"x"}`, false},
		{`{"source":{"system":"s"}}`, false},
	} {
		res := v.Validate([]byte(c.doc))
		if len(res.Issues) == 0 || res.Issues[0].Rule != "element-required" {
			t.Fatalf("%s: issues %+v, want element-required", c.doc, res.Issues)
		}
		msg := res.Issues[0].Message
		if got := strings.Contains(msg, "map --kind KIND FILE") && strings.Contains(msg, "/ingest/{kind}?dryRun=true"); got != c.advice {
			t.Errorf("%s: message %q, advice %v, want %v", c.doc, msg, got, c.advice)
		}
	}
}

// TestBundleTypeUnknown: a Bundle whose type is no Bundle type is told so
// (binding-required at Bundle.type), and its entries are not blamed by
// the rules that depend on the type (a beginner's review: "transacton"
// got one bdl-3 per correct entry).
func TestBundleTypeUnknown(t *testing.T) {
	v := testValidator()
	doc := `{"resourceType":"Bundle","type":"transacton","entry":[` +
		`{"fullUrl":"urn:uuid:0e6a2f0c-7f0e-4c3f-9a7a-0b7c2d1e5f60","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}},` +
		`{"fullUrl":"urn:uuid:0e6a2f0c-7f0e-4c3f-9a7a-0b7c2d1e5f61","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}}]}`
	res := v.Validate([]byte(doc))
	if len(res.Issues) != 1 || res.Issues[0].Rule != "binding-required" || res.Issues[0].Expression != "Bundle.type" {
		t.Errorf("issues = %+v, want only binding-required at Bundle.type", res.Issues)
	}
}

// TestFormatReasonEveryPrefix: the reason of a refused primitive value is
// said for every prefix of values of every shape (no index out of range
// on a value cut short). (TestRules checks that it does not repeat the
// value.)
func TestFormatReasonEveryPrefix(t *testing.T) {
	values := []string{"2020-01-01T10:00:00.123+05:30", "2020-13-40T25:61:61Zx", "20x0-0a-0bT1:2:3", "2020-01-01 10:00",
		"2020-01-01T10:00:00.", "2020-01T10", "0000-01-01", "urn:uuid:ABC", " a  b ", "a_b"}
	for _, v := range values {
		for n := 1; n <= len(v); n++ {
			s := []byte(v[:n])
			for p := prim(0); int(p) < len(primNames); p++ {
				if checkString(p, s) {
					continue
				}
				if r := formatReason(p, s); r == "" {
					t.Errorf("formatReason(%s, %q) is empty, want a reason", primName(p), s)
				}
			}
		}
	}
}
