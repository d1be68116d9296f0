//! User names for user ids, from `/etc/passwd`.
//!
//! Users known only to other name services (LDAP…) are shown by number.

use std::collections::HashMap;

/// The user database, read once.
#[derive(Debug, Default)]
pub struct Users {
    names: HashMap<u32, String>,
}

impl Users {
    /// Reads `/etc/passwd`; an unreadable one gives an empty database.
    pub fn load() -> Users {
        std::fs::read_to_string("/etc/passwd")
            .map(|text| Users::parse(&text))
            .unwrap_or_default()
    }

    fn parse(text: &str) -> Users {
        let mut names = HashMap::new();
        for line in text.lines() {
            let mut fields = line.split(':');
            let (Some(name), Some(_password), Some(uid)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            if let Ok(uid) = uid.parse() {
                // The first entry for a uid is the one the system uses.
                names.entry(uid).or_insert_with(|| name.to_owned());
            }
        }
        Users { names }
    }

    /// The user's name, or the uid as a number if it has none.
    pub fn name(&self, uid: u32) -> String {
        self.names
            .get(&uid)
            .cloned()
            .unwrap_or_else(|| uid.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_by_uid_else_the_number() {
        let users = Users::parse(
            "root:x:0:0:root:/root:/bin/bash\n\
             # a comment\n\
             nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
             toor:x:0:0::/:/bin/sh\n\
             broken\n",
        );
        assert_eq!(users.name(0), "root");
        assert_eq!(users.name(65534), "nobody");
        assert_eq!(users.name(1000), "1000");
    }
}
