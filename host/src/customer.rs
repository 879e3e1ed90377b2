//! Customers: an installer-api id and a DNS domain naming the customer's folder.

use std::fmt;

/// Why a customer domain or id was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CustomerError {
    /// The domain is not a DNS name.
    #[error(
        "`{domain}` is not a valid customer domain: {why} (expected a DNS name such as shop.example.com)"
    )]
    BadDomain {
        /// What was given.
        domain: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The id has characters that cannot be stored or shown safely.
    #[error(
        "`{0}` is not a valid customer id: use 1-64 characters from a-z, A-Z, 0-9, `-` and `_`"
    )]
    BadId(String),
}

/// A validated DNS domain, lowercase. Being a DNS name, it can never contain `/`, `..` or NUL, so
/// `<customers_root>/<domain>` always names a direct child of the customers root.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Domain(String);

impl Domain {
    /// Validates `s` as a DNS name: 1-253 characters, labels of 1-63 characters from a-z, 0-9 and
    /// `-`, not starting or ending with `-`, at least two labels, and a top-level label that is not
    /// all digits.
    pub fn parse(s: &str) -> Result<Self, CustomerError> {
        let bad = |why| CustomerError::BadDomain {
            domain: s.to_owned(),
            why,
        };
        let lower = s.to_ascii_lowercase();
        if lower.is_empty() || lower.len() > 253 {
            return Err(bad("length must be 1-253 characters"));
        }
        let labels: Vec<&str> = lower.split('.').collect();
        if labels.len() < 2 {
            return Err(bad("it needs at least two labels"));
        }
        for label in &labels {
            if label.is_empty() || label.len() > 63 {
                return Err(bad("each label must be 1-63 characters"));
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(bad("only letters, digits, `-` and `.` are allowed"));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(bad("a label cannot start or end with `-`"));
            }
        }
        if labels
            .last()
            .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(bad("the top-level label cannot be numeric"));
        }
        Ok(Self(lower))
    }

    /// The domain as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A customer as a run sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    /// installer-api's id; the CLI uses the domain when none is given.
    pub id: String,
    /// The customer's domain, naming its folder.
    pub domain: Domain,
}

impl Customer {
    /// Builds a customer from a domain and an optional id (defaulting to the domain).
    pub fn new(domain: &str, id: Option<&str>) -> Result<Self, CustomerError> {
        let domain = Domain::parse(domain)?;
        let id = match id {
            Some(id) => {
                let ok = !id.is_empty()
                    && id.len() <= 64
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !ok {
                    return Err(CustomerError::BadId(id.to_owned()));
                }
                id.to_owned()
            }
            None => domain.as_str().to_owned(),
        };
        Ok(Self { id, domain })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_names_and_lowercases_them() {
        assert_eq!(
            Domain::parse("Shop.Example.com").unwrap().as_str(),
            "shop.example.com"
        );
        assert!(Domain::parse("a-b.c1.io").is_ok());
    }

    #[test]
    fn refuses_anything_that_could_name_another_folder() {
        for bad in [
            "",
            ".",
            "..",
            "../etc",
            "a/b.com",
            "shop",
            "shop..com",
            "-a.com",
            "a-.com",
            "a.com.",
            "a b.com",
            "a\0.com",
            "1.2.3.4",
            "/etc/passwd",
            "ş.com",
        ] {
            assert!(Domain::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn customer_ids_are_restricted() {
        assert_eq!(Customer::new("a.com", Some("42")).unwrap().id, "42");
        assert_eq!(Customer::new("a.com", None).unwrap().id, "a.com");
        assert!(Customer::new("a.com", Some("../x")).is_err());
    }
}
