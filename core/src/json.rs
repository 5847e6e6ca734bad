//! Small operations on JSON values that never panic.

use serde_json::Value;

/// Sets `key` of an object; a value that is not an object is left as it is. (Indexing a
/// `Value` to assign panics on anything but an object or null — data from clients can be
/// anything.)
pub fn set(v: &mut Value, key: &str, val: Value) {
    if v.is_null() {
        *v = Value::Object(Default::default());
    }
    if let Value::Object(m) = v {
        m.insert(key.to_owned(), val);
    }
}
