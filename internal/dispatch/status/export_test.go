package status

// ByMessageIDWhere is byMessageIDWhere, for the test that its lookup uses
// migration 00023's index.
const ByMessageIDWhere = byMessageIDWhere
