//! Registration files: the YAML format of the spec (and Synapse), parsed into ruma's
//! `Registration`, validated, with the namespaces compiled once.

use std::path::Path;

use regex::Regex;
use ruma::{
    api::appservice::{Namespace, Registration},
    OwnedUserId, RoomAliasId, RoomId, ServerName, UserId,
};
use serde_json::Value;

/// Why a registration (or a set of them) was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    #[error("{file}: not a valid registration: {message}")]
    Invalid { file: String, message: String },
    #[error("{file}: namespace {kind} has a bad regex {pattern:?}: {message}")]
    BadRegex {
        file: String,
        kind: &'static str,
        pattern: String,
        message: String,
    },
    #[error("{first} and {second} use the same {what}")]
    Duplicate {
        first: String,
        second: String,
        what: &'static str,
    },
    #[error("exclusive {kind} namespaces of {first} ({a:?}) and {second} ({b:?}) overlap")]
    Overlap {
        first: String,
        second: String,
        kind: &'static str,
        a: String,
        b: String,
    },
    #[error("{0}")]
    Io(String),
}

/// One compiled namespace.
#[derive(Debug, Clone)]
pub struct Ns {
    pub pattern: String,
    pub exclusive: bool,
    regex: Regex,
}

impl Ns {
    fn compile(file: &str, kind: &'static str, ns: &Namespace) -> Result<Ns, RegistrationError> {
        // Anchored at the start like Synapse's `re.match`; patterns anchor their end with `$`
        // when they mean to.
        let regex =
            Regex::new(&format!("^(?:{})", ns.regex)).map_err(|e| RegistrationError::BadRegex {
                file: file.to_owned(),
                kind,
                pattern: ns.regex.clone(),
                message: e.to_string(),
            })?;
        Ok(Ns {
            pattern: ns.regex.clone(),
            exclusive: ns.exclusive,
            regex,
        })
    }

    pub fn matches(&self, s: &str) -> bool {
        self.regex.is_match(s)
    }

    /// The literal text every match starts with (up to the first regex operator).
    fn literal_prefix(&self) -> String {
        let mut out = String::new();
        let mut chars = self.pattern.trim_start_matches('^').chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(n) if n.is_ascii_punctuation() => out.push(n),
                    _ => break,
                },
                // A quantifier makes the character before it uncertain.
                '*' | '?' | '{' => {
                    out.pop();
                    break;
                }
                '.' | '+' | '(' | ')' | '[' | ']' | '}' | '|' | '$' | '^' => break,
                c => out.push(c),
            }
        }
        out
    }
}

/// A loaded application service.
#[derive(Debug, Clone)]
pub struct Appservice {
    pub registration: Registration,
    /// Where it came from (a file name), for messages.
    pub source: String,
    /// `@{sender_localpart}:{server_name}`.
    pub sender: OwnedUserId,
    pub users: Vec<Ns>,
    pub aliases: Vec<Ns>,
    pub rooms: Vec<Ns>,
    /// `receive_ephemeral` or `de.sorunome.msc2409.push_ephemeral`.
    pub push_ephemeral: bool,
    /// `org.matrix.msc4203.receive_to_device` / `receive_to_device`; else follows ephemeral.
    pub push_to_device: bool,
    /// The YAML as read, kept to notice changes.
    pub text: String,
}

impl Appservice {
    /// Parses and validates one registration file's text.
    pub fn parse(
        source: &str,
        text: &str,
        server_name: &ServerName,
    ) -> Result<Appservice, RegistrationError> {
        let invalid = |message: String| RegistrationError::Invalid {
            file: source.to_owned(),
            message,
        };
        let value: Value = serde_norway::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let registration: Registration =
            serde_json::from_value(value.clone()).map_err(|e| invalid(e.to_string()))?;
        if registration.id.trim().is_empty() {
            return Err(invalid("id must not be empty".into()));
        }
        if registration.as_token.len() < 8 || registration.hs_token.len() < 8 {
            return Err(invalid(
                "as_token and hs_token must be at least 8 characters".into(),
            ));
        }
        if registration.as_token == registration.hs_token {
            return Err(invalid("as_token and hs_token must differ".into()));
        }
        if let Some(url) = &registration.url {
            let parsed = reqwest::Url::parse(url).map_err(|e| invalid(format!("url: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(invalid("url must be http or https".into()));
            }
        }
        let sender =
            UserId::parse_with_server_name(registration.sender_localpart.as_str(), server_name)
                .map_err(|e| invalid(format!("sender_localpart: {e}")))?;
        let compile = |kind: &'static str, list: &[Namespace]| {
            list.iter()
                .map(|ns| Ns::compile(source, kind, ns))
                .collect::<Result<Vec<_>, _>>()
        };
        let users = compile("users", &registration.namespaces.users)?;
        let aliases = compile("aliases", &registration.namespaces.aliases)?;
        let rooms = compile("rooms", &registration.namespaces.rooms)?;
        let flag = |key: &str| value.get(key).and_then(Value::as_bool);
        let push_ephemeral = registration.receive_ephemeral
            || flag("de.sorunome.msc2409.push_ephemeral").unwrap_or(false);
        let push_to_device = flag("org.matrix.msc4203.receive_to_device")
            .or_else(|| flag("receive_to_device"))
            .unwrap_or(push_ephemeral);
        Ok(Appservice {
            registration,
            source: source.to_owned(),
            sender,
            users,
            aliases,
            rooms,
            push_ephemeral,
            push_to_device,
            text: text.to_owned(),
        })
    }

    /// Reads and validates a registration file.
    pub fn load(path: &Path, server_name: &ServerName) -> Result<Appservice, RegistrationError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| RegistrationError::Io(format!("reading {}: {e}", path.display())))?;
        Appservice::parse(&path.display().to_string(), &text, server_name)
    }

    pub fn id(&self) -> &str {
        &self.registration.id
    }

    /// The user may be acted as: the sender or any user namespace.
    pub fn owns_user(&self, user_id: &UserId) -> bool {
        user_id == self.sender || self.users.iter().any(|n| n.matches(user_id.as_str()))
    }

    /// The user is reserved to this application service.
    pub fn owns_user_exclusively(&self, user_id: &UserId) -> bool {
        user_id == self.sender
            || self
                .users
                .iter()
                .any(|n| n.exclusive && n.matches(user_id.as_str()))
    }

    pub fn owns_alias(&self, alias: &RoomAliasId) -> bool {
        self.aliases.iter().any(|n| n.matches(alias.as_str()))
    }

    pub fn owns_alias_exclusively(&self, alias: &RoomAliasId) -> bool {
        self.aliases
            .iter()
            .any(|n| n.exclusive && n.matches(alias.as_str()))
    }

    pub fn owns_room(&self, room_id: &RoomId) -> bool {
        self.rooms.iter().any(|n| n.matches(room_id.as_str()))
    }

    /// Whether requests acting as `user_id` are rate limited.
    pub fn rate_limits(&self, user_id: &UserId) -> bool {
        user_id != self.sender && self.registration.rate_limited.unwrap_or(true)
    }
}

/// Checks a set of registrations against each other: ids and tokens are unique, and no two
/// exclusive namespaces of different services can match the same id.
pub fn validate_set(list: &[&Appservice]) -> Result<(), RegistrationError> {
    for (i, a) in list.iter().enumerate() {
        for b in &list[i + 1..] {
            let dup = |what: &'static str| RegistrationError::Duplicate {
                first: a.source.clone(),
                second: b.source.clone(),
                what,
            };
            if a.id() == b.id() {
                return Err(dup("id"));
            }
            let tokens_a = [&a.registration.as_token, &a.registration.hs_token];
            let tokens_b = [&b.registration.as_token, &b.registration.hs_token];
            if tokens_a.iter().any(|t| tokens_b.contains(t)) {
                return Err(dup("token"));
            }
            if a.sender == b.sender {
                return Err(dup("sender_localpart"));
            }
            for (kind, na, nb) in [
                ("users", &a.users, &b.users),
                ("aliases", &a.aliases, &b.aliases),
                ("rooms", &a.rooms, &b.rooms),
            ] {
                for x in na.iter().filter(|n| n.exclusive) {
                    for y in nb.iter().filter(|n| n.exclusive) {
                        if overlaps(x, y) {
                            return Err(RegistrationError::Overlap {
                                first: a.source.clone(),
                                second: b.source.clone(),
                                kind,
                                a: x.pattern.clone(),
                                b: y.pattern.clone(),
                            });
                        }
                    }
                }
            }
            for (x, y) in [(a, b), (b, a)] {
                if y.owns_user_exclusively(&x.sender) && x.sender != y.sender {
                    return Err(RegistrationError::Overlap {
                        first: x.source.clone(),
                        second: y.source.clone(),
                        kind: "users",
                        a: x.sender.to_string(),
                        b: "an exclusive namespace".into(),
                    });
                }
            }
        }
    }
    Ok(())
}

/// Whether two namespaces can match one id. Exact for the usual shape — a literal prefix
/// followed by a wildcard — and conservative otherwise: each pattern is tried on the other's
/// literal prefix extended by a few sample endings.
fn overlaps(x: &Ns, y: &Ns) -> bool {
    if x.pattern == y.pattern {
        return true;
    }
    let (px, py) = (x.literal_prefix(), y.literal_prefix());
    let samples = |p: &str| {
        [
            p.to_owned(),
            format!("{p}a"),
            format!("{p}_a:localhost"),
            format!("{p}a:localhost"),
        ]
    };
    samples(&px).iter().any(|s| x.matches(s) && y.matches(s))
        || samples(&py).iter().any(|s| x.matches(s) && y.matches(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(id: &str, as_token: &str, user_regex: &str) -> String {
        format!(
            "id: {id}\nurl: http://127.0.0.1:9\nas_token: {as_token}\nhs_token: hs_{as_token}\nsender_localpart: {id}_bot\nnamespaces:\n  users:\n    - exclusive: true\n      regex: '{user_regex}'\n  aliases: []\n  rooms: []\nrate_limited: false\nde.sorunome.msc2409.push_ephemeral: true\n"
        )
    }

    fn server() -> &'static ServerName {
        <&ServerName>::try_from("example.org").unwrap()
    }

    #[test]
    fn parses_and_matches_namespaces() {
        let a = Appservice::parse("a.yaml", &yaml("irc", "tok_irc_123", "@_irc_.*"), server())
            .expect("valid");
        assert!(a.push_ephemeral && a.push_to_device);
        assert_eq!(a.sender.as_str(), "@irc_bot:example.org");
        let bob = UserId::parse("@_irc_bob:example.org").unwrap();
        let alice = UserId::parse("@alice:example.org").unwrap();
        assert!(a.owns_user_exclusively(&bob));
        assert!(!a.owns_user(&alice));
        assert!(!a.rate_limits(&bob));
    }

    #[test]
    fn refuses_bad_regex_and_conflicts() {
        let err = Appservice::parse("b.yaml", &yaml("x", "tok_x_1234", "@_x_(.*"), server())
            .expect_err("bad regex");
        assert!(matches!(err, RegistrationError::BadRegex { .. }), "{err}");

        let a =
            Appservice::parse("a.yaml", &yaml("a", "tok_a_1234", "@_irc_.*"), server()).unwrap();
        let same_token =
            Appservice::parse("b.yaml", &yaml("b", "tok_a_1234", "@_b_.*"), server()).unwrap();
        assert!(matches!(
            validate_set(&[&a, &same_token]),
            Err(RegistrationError::Duplicate { what: "token", .. })
        ));
        let overlapping =
            Appservice::parse("c.yaml", &yaml("c", "tok_c_1234", "@_irc_bob.*"), server()).unwrap();
        assert!(matches!(
            validate_set(&[&a, &overlapping]),
            Err(RegistrationError::Overlap { .. })
        ));
        let disjoint =
            Appservice::parse("d.yaml", &yaml("d", "tok_d_1234", "@_slack_.*"), server()).unwrap();
        validate_set(&[&a, &disjoint]).expect("disjoint namespaces");
    }

    #[test]
    fn refuses_missing_fields() {
        let err =
            Appservice::parse("e.yaml", "id: e\nurl: null\n", server()).expect_err("no tokens");
        assert!(err.to_string().contains("e.yaml"), "{err}");
    }
}
