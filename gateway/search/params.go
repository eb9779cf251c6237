package search

import (
	"slices"
	"strings"
	"sync"

	"github.com/ketamine-gateway/ketamine-gateway/schemas/r4"
)

// kind is the FHIR datatype found at a parameter path; it decides how the
// extractor turns the element into entries.
type kind int

const (
	kIdentifier   kind = iota // Identifier -> token (system, value)
	kCoding                   // Coding -> token (system, code)
	kConcept                  // CodeableConcept -> token per coding
	kCode                     // code, id, string, boolean -> token without system
	kContactPoint             // ContactPoint -> token (value)
	kString                   // string -> string
	kHumanName                // HumanName -> string per part
	kAddress                  // Address -> string per part
	kDate                     // date, dateTime, instant -> date
	kPeriod                   // Period -> date
	kTiming                   // Timing -> date per event, boundsPeriod
	kReference                // Reference -> reference (+ token for .identifier)
	kCanonical                // canonical -> reference (RefURL)
	kQuantity                 // Quantity -> quantity
	kNumber                   // integer, decimal -> number
	kURI                      // uri, url, canonical as a uri value -> uri
	kDeceased                 // Patient.deceased[x] -> token true/false (R4: deceased.exists() and deceased != false)
)

// path is one element path of a parameter and the datatype there.
type path struct {
	p string
	k kind
	// codes, for a code element (kCode), is the R4 definition of the
	// object holding it and key its JSON name: the code system its
	// required binding implies (r4.Node.CodeSystem) is the system of its
	// entries. Set by defs.
	codes r4.Node
	key   string
	// system, for a ContactPoint (kContactPoint), keeps only those of
	// that ContactPoint.system (R4's "telecom.where(system='phone')");
	// empty keeps all.
	system string
}

// def is the gateway's definition of one search parameter.
type def struct {
	name    string
	typ     Type
	desc    string
	paths   []path
	targets []string
	// only keeps only references known to be of this type: the R4
	// FHIRPath "X.where(resolve() is Patient)" of the patient parameters
	// (Patient), Encounter's practitioner (Practitioner).
	only string
	// union names the token parameters of the same resource type whose
	// rows answer this one at query time (Observation's combo-code: its
	// code and component-code rows): it has no rows of its own (see
	// TokenRows).
	union []string
	// compartment: the generic patient parameter, any Patient reference
	// anywhere in the resource (see Lookup).
	compartment bool
	// ext indexes the valueString of the resource's extensions with this
	// url as a token code (the gateway's trace-id parameters).
	ext string
	// url is the canonical URL of a gateway-defined parameter's
	// SearchParameter (GatewaySearchParameters); "" for R4's.
	url string
	// rowsOf, set by defs, names the reference parameter of the same
	// resource type whose index rows hold the literal references of this
	// parameter of one type (only): one with the same paths that accepts
	// that type (an Observation's patient is its subject where that is a
	// Patient, an Encounter's practitioner its participant where that is
	// a Practitioner). Those references are not indexed twice (see
	// ReferenceRows).
	rowsOf string
}

// The URLs of the SearchParameter resources the gateway defines itself.
const (
	adverseEventIdentifierURL = "https://ketamine-gateway.org/fhir/SearchParameter/AdverseEvent-identifier"
	medAdminPartOfURL         = "https://ketamine-gateway.org/fhir/SearchParameter/MedicationAdministration-part-of"
	auditTraceIDURL           = "https://ketamine-gateway.org/fhir/SearchParameter/AuditEvent-trace-id"
	provenanceTraceIDURL      = "https://ketamine-gateway.org/fhir/SearchParameter/Provenance-trace-id"
	// TraceIDExtension is the extension carrying the OpenTelemetry trace
	// id of the request that made an AuditEvent or Provenance.
	TraceIDExtension = "https://ketamine-gateway.org/fhir/StructureDefinition/trace-id"
)

// traceID is the gateway's trace-id parameter.
func traceID(what, url string) def {
	return def{name: "trace-id", typ: TypeToken, ext: TraceIDExtension, url: url,
		desc: "The OpenTelemetry trace id (32 hex digits) of the request that recorded the " + what + " (gateway-defined: " + url + ")"}
}

func p(s string, k kind) path { return path{p: s, k: k} }

// gatewayDefined is d, a parameter R4 does not define, with the canonical
// URL of the gateway's SearchParameter for it.
func gatewayDefined(d def, url string) def {
	d.url = url
	return d
}

func token(name, desc string, paths ...path) def {
	return def{name: name, typ: TypeToken, desc: desc, paths: paths}
}

func str(name, desc string, paths ...path) def {
	return def{name: name, typ: TypeString, desc: desc, paths: paths}
}

func date(name, desc string, paths ...path) def {
	return def{name: name, typ: TypeDate, desc: desc, paths: paths}
}

func ref(name, desc string, targets []string, paths ...string) def {
	d := def{name: name, typ: TypeReference, desc: desc, targets: targets}
	for _, s := range paths {
		d.paths = append(d.paths, path{p: s, k: kReference})
	}
	return d
}

func patientRef(desc string, paths ...string) def {
	return onlyRef("patient", desc, "Patient", paths...)
}

// onlyRef is a reference parameter of the references at paths known to
// be of type rt (R4's "X.where(resolve() is rt)").
func onlyRef(name, desc, rt string, paths ...string) def {
	d := ref(name, desc, []string{rt}, paths...)
	d.only = rt
	return d
}

// contact is the ContactPoints at s of ContactPoint.system sys (any if
// sys is empty).
func contact(s, sys string) path { return path{p: s, k: kContactPoint, system: sys} }

// encounterRef is R4's encounter parameter of a clinical resource: its
// encounter element (R4's clinical-encounter also allows EpisodeOfCare,
// which these elements cannot hold).
func encounterRef(what string) def {
	return ref("encounter", "The Encounter during which the "+what+" was made or took place",
		[]string{"Encounter"}, "encounter")
}

func identifier(what string) def {
	return token("identifier", "A business identifier of the "+what, p("identifier", kIdentifier))
}

// groupPatient is the target list of the subject of most clinical resources.
func groupPatient() []string { return []string{"Group", "Patient"} }

// commonDefs are the parameters of every resource type. _profile,
// _security and _tag are not among them: each would add a row per label
// to every write (about 1 row a resource in Synthea, 80% of the growth of
// a session record's rows), too dear for issue 19's write cost; see
// docs/fhir.md.
func commonDefs() []def {
	return []def{
		token("_id", "Logical id of the resource", p("id", kCode)),
		date("_lastUpdated", "When the resource version last changed", p("meta.lastUpdated", kDate)),
	}
}

// specificDefs returns the type-specific parameters of an R4 resource type
// (nil for Parameters, which is never stored).
func specificDefs(rt string) []def {
	switch rt {
	case "Patient":
		return []def{
			token("active", "Whether the patient record is active", p("active", kCode)),
			str("address", "A portion of any part of an address of the patient (line, city, district, state, "+
				"postalCode, country, text)", p("address", kAddress)),
			str("address-city", "A city specified in an address", p("address.city", kString)),
			str("address-postalcode", "A postal code specified in an address", p("address.postalCode", kString)),
			str("address-state", "A state specified in an address", p("address.state", kString)),
			date("birthdate", "The patient's date of birth", p("birthDate", kDate)),
			token("deceased", "Whether the patient is deceased: true for deceasedBoolean true or a deceasedDateTime, "+
				"else false", p("deceased", kDeceased)),
			token("email", "A value in an email contact", contact("telecom", "email")),
			str("family", "A portion of the family name of the patient", p("name.family", kString)),
			token("gender", "Gender of the patient", p("gender", kCode)),
			ref("general-practitioner", "The patient's nominated general practitioner",
				[]string{"Organization", "Practitioner", "PractitionerRole"}, "generalPractitioner"),
			str("given", "A portion of the given name of the patient", p("name.given", kString)),
			identifier("patient"),
			str("name", "A portion of any part of a name of the patient (family, given, prefix, suffix, text)",
				p("name", kHumanName)),
			ref("organization", "The organization that is the custodian of the patient record",
				[]string{"Organization"}, "managingOrganization"),
			token("phone", "A value in a phone contact", contact("telecom", "phone")),
			token("telecom", "The value in any kind of telecom details of the patient", contact("telecom", "")),
		}
	case "Encounter":
		return []def{
			token("class", "Classification of patient encounter", p("class", kCoding)),
			date("date", "A date within the period the encounter lasted", p("period", kPeriod)),
			identifier("encounter"),
			ref("participant", "Persons involved in the encounter other than the patient",
				[]string{"Practitioner", "PractitionerRole", "RelatedPerson"}, "participant.individual"),
			patientRef("The patient present at the encounter", "subject"),
			onlyRef("practitioner", "Persons involved in the encounter other than the patient, where a Practitioner",
				"Practitioner", "participant.individual"),
			ref("service-provider", "The organization (facility) responsible for this encounter",
				[]string{"Organization"}, "serviceProvider"),
			token("status", "The status of the encounter", p("status", kCode)),
			ref("subject", "The patient or group present at the encounter", groupPatient(), "subject"),
			token("type", "Specific type of encounter", p("type", kConcept)),
		}
	case "Observation":
		return []def{
			token("category", "The classification of the type of observation", p("category", kConcept)),
			token("code", "The code of the observation type", p("code", kConcept)),
			{name: "combo-code", typ: TypeToken, union: []string{"code", "component-code"},
				desc: "The code of the observation type or of a component (answered from the code and component-code rows)"},
			token("component-code", "The component code of the observation type", p("component.code", kConcept)),
			date("date", "Obtained date/time; if a period, a date within it",
				p("effectiveDateTime", kDate), p("effectivePeriod", kPeriod),
				p("effectiveTiming", kTiming), p("effectiveInstant", kDate)),
			ref("derived-from", "Related measurements the observation is made from",
				[]string{"DocumentReference", "ImagingStudy", "Media", "MolecularSequence", "Observation", "QuestionnaireResponse"},
				"derivedFrom"),
			encounterRef("observation"),
			ref("has-member", "Related resource that belongs to the observation group",
				[]string{"MolecularSequence", "Observation", "QuestionnaireResponse"}, "hasMember"),
			identifier("observation"),
			ref("part-of", "Part of referenced event",
				[]string{"ImagingStudy", "Immunization", "MedicationAdministration", "MedicationDispense", "MedicationStatement", "Procedure"},
				"partOf"),
			patientRef("The subject of the observation if it is a patient", "subject"),
			token("status", "The status of the observation", p("status", kCode)),
			ref("subject", "The subject the observation is about",
				[]string{"Device", "Group", "Location", "Patient"}, "subject"),
			token("value-concept", "The value of the observation, if it is a CodeableConcept",
				p("valueCodeableConcept", kConcept)),
			{name: "value-quantity", typ: TypeQuantity, desc: "The value of the observation, if it is a Quantity",
				paths: []path{p("valueQuantity", kQuantity)}},
			str("value-string", "The value of the observation, if it is a string", p("valueString", kString)),
		}
	case "Procedure":
		return []def{
			token("category", "Classification of the procedure", p("category", kConcept)),
			token("code", "A code to identify the procedure", p("code", kConcept)),
			date("date", "When the procedure was performed",
				p("performedDateTime", kDate), p("performedPeriod", kPeriod)),
			encounterRef("procedure"),
			identifier("procedure"),
			patientRef("The patient the procedure was performed on", "subject"),
			token("status", "The status of the procedure", p("status", kCode)),
			ref("subject", "The patient or group the procedure was performed on", groupPatient(), "subject"),
		}
	case "MedicationAdministration":
		return []def{
			token("code", "The code of the medication administered", p("medicationCodeableConcept", kConcept)),
			ref("context", "The Encounter or EpisodeOfCare the administration is part of",
				[]string{"Encounter", "EpisodeOfCare"}, "context"),
			date("effective-time", "Date administration happened (or did not happen)",
				p("effectiveDateTime", kDate), p("effectivePeriod", kPeriod)),
			identifier("administration"),
			ref("medication", "The Medication resource administered", []string{"Medication"}, "medicationReference"),
			gatewayDefined(ref("part-of", "The event the administration is part of (gateway-defined: "+medAdminPartOfURL+")",
				[]string{"MedicationAdministration", "Procedure"}, "partOf"), medAdminPartOfURL),
			patientRef("The patient who received the medication", "subject"),
			ref("performer", "The individual who administered the medication",
				[]string{"Device", "Patient", "Practitioner", "PractitionerRole", "RelatedPerson"}, "performer.actor"),
			token("status", "MedicationAdministration event status (in-progress, not-done, on-hold, completed, ...)",
				p("status", kCode)),
			ref("subject", "The patient or group who received the medication", groupPatient(), "subject"),
		}
	case "MedicationRequest":
		return []def{
			token("code", "Return prescriptions of this medication code", p("medicationCodeableConcept", kConcept)),
			identifier("prescription"),
			token("intent", "Returns prescriptions with different intents", p("intent", kCode)),
			patientRef("Returns prescriptions for a specific patient", "subject"),
			ref("requester", "Returns prescriptions prescribed by this prescriber",
				[]string{"Device", "Organization", "Patient", "Practitioner", "PractitionerRole", "RelatedPerson"}, "requester"),
			token("status", "Status of the prescription", p("status", kCode)),
			ref("subject", "The identity of a patient to list orders for", groupPatient(), "subject"),
		}
	case "Flag":
		return []def{
			ref("author", "Flag creator", []string{"Device", "Organization", "Patient", "Practitioner", "PractitionerRole"}, "author"),
			date("date", "Time period when flag is active", p("period", kPeriod)),
			identifier("flag"),
			patientRef("The identity of a subject to list flags for", "subject"),
			ref("subject", "The identity of a subject to list flags for",
				[]string{"Group", "Location", "Medication", "Organization", "Patient", "PlanDefinition", "Practitioner", "Procedure"}, "subject"),
		}
	case "DetectedIssue":
		return []def{
			ref("author", "The provider or device that identified the issue",
				[]string{"Device", "Practitioner", "PractitionerRole"}, "author"),
			token("code", "Issue Category, e.g. drug-drug, duplicate therapy, etc.", p("code", kConcept)),
			date("identified", "When identified", p("identifiedDateTime", kDate), p("identifiedPeriod", kPeriod)),
			identifier("detected issue"),
			ref("implicated", "Problem resource", nil, "implicated"),
			patientRef("Associated patient", "patient"),
		}
	case "AdverseEvent":
		// R4 defines no patient parameter for AdverseEvent: use subject.
		return []def{
			token("actuality", "actual | potential", p("actuality", kCode)),
			token("category", "product-problem | product-quality | product-use-error | wrong-dose | ...",
				p("category", kConcept)),
			date("date", "When the event occurred", p("date", kDate)),
			token("event", "Type of the event itself in relation to the subject", p("event", kConcept)),
			gatewayDefined(token("identifier", "The business identifier of the adverse event (gateway-defined: "+
				adverseEventIdentifierURL+")", p("identifier", kIdentifier)), adverseEventIdentifierURL),
			token("seriousness", "Seriousness of the event", p("seriousness", kConcept)),
			token("severity", "Severity of the event: mild | moderate | severe", p("severity", kConcept)),
			ref("subject", "Subject impacted by the event",
				[]string{"Group", "Patient", "Practitioner", "RelatedPerson"}, "subject"),
			ref("substance", "The entity suspected to have caused the event",
				[]string{"Device", "Immunization", "Medication", "MedicationAdministration", "MedicationStatement", "Procedure", "Substance"},
				"suspectEntity.instance"),
		}
	case "Condition":
		return []def{
			token("category", "The category of the condition", p("category", kConcept)),
			token("clinical-status", "The clinical status of the condition", p("clinicalStatus", kConcept)),
			token("code", "Code for the condition", p("code", kConcept)),
			encounterRef("condition"),
			identifier("condition"),
			date("onset-date", "Date related onsets (dateTime and Period)",
				p("onsetDateTime", kDate), p("onsetPeriod", kPeriod)),
			patientRef("The patient who has the condition", "subject"),
			ref("subject", "The patient or group who has the condition", groupPatient(), "subject"),
			token("verification-status", "unconfirmed | provisional | differential | confirmed | refuted | entered-in-error",
				p("verificationStatus", kConcept)),
		}
	case "DiagnosticReport":
		return []def{
			token("category", "Which diagnostic discipline/department created the report", p("category", kConcept)),
			token("code", "The code for the report, as opposed to codes for the atomic results", p("code", kConcept)),
			date("date", "The clinically relevant time of the report",
				p("effectiveDateTime", kDate), p("effectivePeriod", kPeriod)),
			encounterRef("report"),
			identifier("report"),
			r4PatientDef("DiagnosticReport", r4PatientPaths("DiagnosticReport")),
			ref("result", "Link to an atomic result (observation resource)", []string{"Observation"}, "result"),
			token("status", "The status of the report", p("status", kCode)),
		}
	case "Immunization":
		return []def{
			date("date", "Vaccination (non)-Administration Date", p("occurrenceDateTime", kDate)),
			identifier("immunization"),
			r4PatientDef("Immunization", r4PatientPaths("Immunization")),
			token("status", "Immunization event status", p("status", kCode)),
			token("vaccine-code", "Vaccine Product Administered", p("vaccineCode", kConcept)),
		}
	case "Provenance":
		return []def{
			ref("agent", "Who participated",
				[]string{"Device", "Organization", "Patient", "Practitioner", "PractitionerRole", "RelatedPerson"}, "agent.who"),
			ref("entity", "Identity of entity", nil, "entity.what"),
			patientRef("A target of the provenance that is a patient", "target"),
			date("recorded", "When the activity was recorded / updated", p("recorded", kDate)),
			ref("target", "The resources the provenance record is about", nil, "target"),
			traceID("Provenance", provenanceTraceIDURL),
		}
	case "AuditEvent":
		return []def{
			token("action", "Type of action performed during the event", p("action", kCode)),
			str("address", "Identifier for the network access point of the user device", p("agent.network.address", kString)),
			ref("agent", "Identifier of who took part in the event",
				[]string{"Device", "Organization", "Patient", "Practitioner", "PractitionerRole", "RelatedPerson"}, "agent.who"),
			date("date", "Time when the event was recorded", p("recorded", kDate)),
			ref("entity", "Specific instance of the resource the event is about", nil, "entity.what"),
			token("outcome", "Whether the event succeeded or failed", p("outcome", kCode)),
			patientRef("An agent or entity of the event that is a patient", "agent.who", "entity.what"),
			token("site", "Logical source location within the enterprise (the tenant)", p("source.site", kCode)),
			token("subtype", "More specific type/id for the event", p("subtype", kCoding)),
			traceID("AuditEvent", auditTraceIDURL),
			token("type", "Type/identifier of event", p("type", kCoding)),
		}
	case "CodeSystem", "ValueSet", "ConceptMap", "SearchParameter", "StructureDefinition", "CapabilityStatement",
		"OperationDefinition", "ImplementationGuide":
		return conformanceDefs(rt)
	case "Practitioner":
		// R4's identifier and name: EHR feeds and Synthea create and
		// reference clinicians conditionally by NPI.
		return []def{
			identifier("practitioner"),
			str("name", "A portion of any part of a name of the practitioner (family, given, prefix, suffix, text)",
				p("name", kHumanName)),
			compartmentPatient(),
		}
	case "Organization":
		return []def{
			identifier("organization"),
			str("name", "A portion of the organization's name or alias", p("name", kString), p("alias", kString)),
			compartmentPatient(),
		}
	case "Location":
		return []def{
			identifier("location"),
			str("name", "A portion of the location's name or alias", p("name", kString), p("alias", kString)),
			compartmentPatient(),
		}
	// The three types of R4's patient compartment without an R4 patient
	// parameter are in it through another parameter (PatientCompartment).
	case "Group":
		return []def{
			ref("member", "Reference to the group member",
				[]string{"Device", "Group", "Medication", "Patient", "Practitioner", "PractitionerRole", "Substance"},
				"member.entity"),
			compartmentPatient(),
		}
	case "Schedule":
		return []def{
			ref("actor", "The individual(HealthcareService, Practitioner, Location, ...) to find a Schedule for",
				[]string{"Device", "HealthcareService", "Location", "Patient", "Practitioner", "PractitionerRole", "RelatedPerson"},
				"actor"),
			compartmentPatient(),
		}
	case "SupplyRequest":
		return []def{
			ref("subject", "The destination of the supply", []string{"Location", "Organization", "Patient"}, "deliverTo"),
			compartmentPatient(),
		}
	case "Parameters", "":
		return nil
	}
	if !isResourceType(rt) {
		return nil
	}
	if paths := r4PatientPaths(rt); paths != nil {
		return []def{r4PatientDef(rt, paths)}
	}
	return []def{compartmentPatient()}
}

// r4PatientDef is R4's patient parameter of resource type rt, of the paths
// r4PatientPaths gives: the references there that are Patients.
func r4PatientDef(rt string, paths []string) def {
	return patientRef("The patient the "+rt+" is about ("+strings.Join(paths, ", ")+", where a Patient)", paths...)
}

// compartmentPatient is the gateway's own patient parameter of the types
// R4 defines none for (Practitioner, Medication, CodeSystem, ...): any
// reference to a Patient. It is no part of the patient compartment
// (PatientCompartment), and has no definition.
func compartmentPatient() def {
	return def{
		name: "patient", typ: TypeReference, targets: []string{"Patient"}, compartment: true,
		desc: "Any reference to a Patient in the resource (gateway-defined: R4 has no patient parameter for this type)",
	}
}

// conformanceDefs are the R4 parameters every canonical conformance
// resource has (url, version, name, status), with which the gateway's own
// are found, and the patient compartment.
func conformanceDefs(rt string) []def {
	return []def{
		{name: "url", typ: TypeURI, desc: "The uri that identifies the " + rt, paths: []path{p("url", kURI)}},
		token("version", "The business version of the "+rt, p("version", kCode)),
		str("name", "Computationally friendly name of the "+rt, p("name", kString)),
		token("status", "The current status of the "+rt, p("status", kCode)),
		compartmentPatient(),
	}
}

// defs returns all parameter definitions of a resource type, sorted by name
// (nil for a type that is not an R4 resource type).
func defs(rt string) []def {
	if ds, ok := defsOf.Load(rt); ok {
		return ds.([]def)
	}
	if !isResourceType(rt) {
		return nil
	}
	all := append(commonDefs(), specificDefs(rt)...)
	slices.SortFunc(all, func(a, b def) int { return strings.Compare(a.name, b.name) })
	all = slices.Clip(all)
	for i := range all {
		all[i].rowsOf = rowsOf(all, all[i])
		all[i].paths = boundCodes(rt, all[i].paths)
		if all[i].url == "" && !all[i].compartment {
			all[i].url = R4Definition(rt, all[i].name) // looked up once a type, not at every Lookup
		}
	}
	defsOf.Store(rt, all)
	return all
}

// boundCodes returns paths, of a parameter of resource type rt, with the
// R4 definition of each code element's object and key set (see path).
func boundCodes(rt string, paths []path) []path {
	for i, pp := range paths {
		if pp.k != kCode {
			continue
		}
		n := r4.ResourceNode(rt)
		steps := strings.Split(pp.p, ".")
		for _, step := range steps[:len(steps)-1] {
			_, n, _ = n.Member(step)
		}
		paths[i].codes, paths[i].key = n, steps[len(steps)-1]
	}
	return paths
}

// CodeSystem returns the system Extract gives code as the value of a code
// element of the token parameter name of resourceType: the code system
// the element's R4 required binding implies ("female" of Patient's gender:
// http://hl7.org/fhir/administrative-gender), "" where there is none (a
// string or id element, a code outside the binding's value set, a
// parameter of no code element). For those who make entries without
// Extract (audit.Render), which must agree with it.
func CodeSystem(resourceType, name, code string) string {
	for _, d := range defs(resourceType) {
		if d.name != name {
			continue
		}
		for _, pp := range d.paths {
			if pp.k == kCode {
				return pp.codes.CodeSystem(pp.key, code)
			}
		}
	}
	return ""
}

// rowsOf returns the parameter among all whose reference rows hold those of
// the patient parameter d ("" if none does, or d is no patient parameter):
// a reference parameter with d's paths, no restriction of its own, that
// accepts Patients. Its rows of type Patient are then exactly d's literal
// references (see extractor.accepts).
func rowsOf(all []def, d def) string {
	if d.only == "" {
		return ""
	}
	for _, o := range all {
		if o.typ == TypeReference && o.only == "" && !o.compartment && o.ext == "" && slices.Equal(o.paths, d.paths) &&
			(len(o.targets) == 0 || slices.Contains(o.targets, d.only)) {
			return o.name
		}
	}
	return ""
}

// ReferenceRows returns where the stores keep the literal references of
// the reference parameter name of resourceType: the parameter their index
// rows carry, and the type those rows must reference ("" for any). For
// most parameters that is (name, ""). A patient parameter with the same
// paths as another reference parameter that accepts Patients is that
// parameter's rows of type Patient: an Observation's patient is
// ("subject", "Patient"), since its subject rows of type Patient are
// exactly its patient references, and Extract leaves them out of patient
// (they were 9% of a session record's index rows, each a second time). Its
// Reference.identifier entries stay under its own name (a token entry
// carries no type).
func ReferenceRows(resourceType, name string) (param, refType string) {
	for _, d := range defs(resourceType) {
		if d.name == name && d.rowsOf != "" {
			return d.rowsOf, d.only
		}
	}
	return name, ""
}

// TokenRows returns the parameters whose token rows answer the token
// parameter name of resourceType: name itself, but for a parameter the
// gateway answers from other parameters' rows (Observation's combo-code:
// code and component-code), of which Extract makes no rows of its own.
func TokenRows(resourceType, name string) []string {
	for _, d := range defs(resourceType) {
		if d.name == name && d.union != nil {
			return d.union
		}
	}
	return []string{name}
}

// TokenRowAliases returns, for the token parameter name of every
// resource type, the types where TokenRows gives other parameters,
// grouped by what it gives (Params), for a search over several types.
func TokenRowAliases(name string) []TokenAlias {
	if v, ok := tokenAliasesOf.Load(name); ok {
		return v.([]TokenAlias)
	}
	var out []TokenAlias
	for _, t := range r4Types {
		ps := TokenRows(t, name)
		if len(ps) == 1 && ps[0] == name {
			continue
		}
		i := slices.IndexFunc(out, func(a TokenAlias) bool { return slices.Equal(a.Params, ps) })
		if i < 0 {
			out = append(out, TokenAlias{Params: ps})
			i = len(out) - 1
		}
		out[i].Types = append(out[i].Types, t)
	}
	tokenAliasesOf.Store(name, out)
	return out
}

// TokenAlias is a set of resource types whose token parameter of one
// name is answered from the rows of Params (see TokenRows).
type TokenAlias struct {
	Types  []string
	Params []string
}

var tokenAliasesOf sync.Map // parameter name -> []TokenAlias

// RowAlias is a set of resource types whose parameter of one name is kept
// as the rows of Param of type RefType (see ReferenceRows).
type RowAlias struct {
	Types   []string
	Param   string
	RefType string
}

// ReferenceRowAliases returns, for the reference parameter name of every
// resource type, the types where ReferenceRows gives another parameter,
// grouped by what it gives, for a search over several types.
func ReferenceRowAliases(name string) []RowAlias {
	if v, ok := aliasesOf.Load(name); ok {
		return v.([]RowAlias)
	}
	var out []RowAlias
	for _, t := range r4Types {
		p, rt := ReferenceRows(t, name)
		if p == name {
			continue
		}
		i := slices.IndexFunc(out, func(a RowAlias) bool { return a.Param == p && a.RefType == rt })
		if i < 0 {
			out = append(out, RowAlias{Param: p, RefType: rt})
			i = len(out) - 1
		}
		out[i].Types = append(out[i].Types, t)
	}
	aliasesOf.Store(name, out)
	return out
}

var aliasesOf sync.Map // parameter name -> []RowAlias

// defsOf holds defs' answer for each R4 resource type asked for (at most
// every type's): every resource written and every search clause asks, and
// building them was a third of an AuditEvent's extraction. Callers only
// read it.
var defsOf sync.Map // resource type -> []def

// param turns a definition of resource type rt into the exported Param.
func (d def) param(rt string) Param {
	res := rt
	if strings.HasPrefix(d.name, "_") {
		res = "Resource"
	}
	out := Param{Resource: res, Name: d.name, Type: d.typ, Description: d.desc, Definition: d.url}
	for _, x := range d.paths {
		if x.system != "" {
			out.Paths = append(out.Paths, x.p+".where(system='"+x.system+"')")
		} else {
			out.Paths = append(out.Paths, x.p)
		}
	}
	for _, u := range d.union {
		i := slices.IndexFunc(defs(rt), func(o def) bool { return o.name == u })
		for _, x := range defs(rt)[i].paths {
			out.Paths = append(out.Paths, x.p)
		}
		out.Text = true
	}
	if d.ext != "" {
		out.Paths = append(out.Paths, "extension('"+d.ext+"').value")
	}
	out.Targets = slices.Clone(d.targets)
	for _, x := range d.paths {
		out.Text = out.Text || x.k == kIdentifier || x.k == kCoding || x.k == kConcept
		out.OfType = out.OfType || x.k == kIdentifier
		if x.k == kCode {
			for _, sys := range x.codes.CodeSystems(x.key) {
				if !slices.Contains(out.Systems, sys) {
					out.Systems = append(out.Systems, sys)
				}
			}
		}
	}
	slices.Sort(out.Systems)
	return out
}

// Lookup returns the search parameter name of resourceType. Every R4
// resource type has _id (token) and _lastUpdated (date), with Resource
// "Resource"; the types the gateway works with have the R4 parameters it
// indexes (see Params). Every other R4 type, except Parameters, has
// "patient": R4's, where R4 defines one for the type (its paths, the
// references there that are Patients), else the gateway's own, matching
// any reference to a Patient anywhere in the resource (Paths is empty for
// it). Returns false for an unknown type or parameter.
func Lookup(resourceType, name string) (Param, bool) {
	for _, d := range defs(resourceType) {
		if d.name == name {
			return d.param(resourceType), true
		}
	}
	return Param{}, false
}

// CommonParams returns, sorted by name, the search parameters every
// resource type has (_id and _lastUpdated; their
// Resource "Resource"): the CapabilityStatement's rest.searchParam.
func CommonParams() []Param {
	var out []Param
	for _, p := range Params("Basic") {
		if p.Resource == "Resource" {
			out = append(out, p)
		}
	}
	return out
}

// Params returns all search parameters of resourceType sorted by name, or
// nil if it is not an R4 resource type.
func Params(resourceType string) []Param {
	ds := defs(resourceType)
	if ds == nil {
		return nil
	}
	out := make([]Param, len(ds))
	for i, d := range ds {
		out[i] = d.param(resourceType)
	}
	return out
}

// Types returns, sorted, the resource types with parameters beyond _id and
// _lastUpdated: every R4 resource type but Parameters (most of them only
// with the generic patient parameter described at Lookup).
func Types() []string {
	out := make([]string, 0, len(r4Types))
	for _, t := range r4Types {
		if specificDefs(t) != nil {
			out = append(out, t)
		}
	}
	return out
}

// GatewaySearchParameters returns the SearchParameter resources, ready to be
// JSON-encoded, of the parameters the gateway defines beyond R4:
// AdverseEvent identifier (R4 has none; url
// https://ketamine-gateway.org/fhir/SearchParameter/AdverseEvent-identifier)
// and MedicationAdministration part-of (added in R5; url
// .../SearchParameter/MedicationAdministration-part-of). The
// CapabilityStatement should cite these urls as the definitions.
func GatewaySearchParameters() []map[string]any {
	traceParam := func(rt, url string) map[string]any {
		return map[string]any{
			"resourceType": "SearchParameter",
			"id":           rt + "-trace-id",
			"url":          url,
			"version":      "1.0.0",
			"name":         rt + "TraceId",
			"status":       "active",
			"description":  "Search " + rt + " by the OpenTelemetry trace id (32 hex digits) of the request that recorded it.",
			"code":         "trace-id",
			"base":         []string{rt},
			"type":         "token",
			"expression":   rt + ".extension('" + TraceIDExtension + "').value",
			"xpathUsage":   "normal",
		}
	}
	return []map[string]any{
		traceParam("AuditEvent", auditTraceIDURL),
		traceParam("Provenance", provenanceTraceIDURL),
		{
			"resourceType": "SearchParameter",
			"id":           "AdverseEvent-identifier",
			"url":          adverseEventIdentifierURL,
			"version":      "1.0.0",
			"name":         "AdverseEventIdentifier",
			"status":       "active",
			"description":  "Search AdverseEvent by its business identifier (AdverseEvent.identifier), as system|value.",
			"code":         "identifier",
			"base":         []string{"AdverseEvent"},
			"type":         "token",
			"expression":   "AdverseEvent.identifier",
			"xpathUsage":   "normal",
		},
		{
			"resourceType": "SearchParameter",
			"id":           "MedicationAdministration-part-of",
			"url":          medAdminPartOfURL,
			"version":      "1.0.0",
			"name":         "MedicationAdministrationPartOf",
			"status":       "active",
			"description":  "Search MedicationAdministration by the event it is part of (MedicationAdministration.partOf).",
			"code":         "part-of",
			"base":         []string{"MedicationAdministration"},
			"type":         "reference",
			"expression":   "MedicationAdministration.partOf",
			"xpathUsage":   "normal",
			"target":       []string{"MedicationAdministration", "Procedure"},
		},
	}
}
