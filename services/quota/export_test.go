package quota

// ToStatus exposes toStatus to the external test package.
var ToStatus = toStatus
