//! Newtypes for the identifiers that flow between modules, so that a host key
//! can never be passed where a target name is expected.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps an already validated identifier.
            pub fn new(s: impl Into<String>) -> Self {
                Self(s.into())
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// A target's name: the stem of the file that declares it (`books.toml` → `books`).
    TargetId
);
string_id!(
    /// A politeness profile's name, global across the configs directory.
    ProfileName
);
string_id!(
    /// An alert channel's name (`[channels.NAME]`), global across the configs directory.
    ChannelName
);
string_id!(
    /// `host:port` of a URL: the unit that politeness limits apply to.
    HostKey
);

impl HostKey {
    /// The host key of a URL, `None` for URLs without a host (`data:`, `mailto:`).
    pub fn of(url: &url::Url) -> Option<Self> {
        let host = url.host_str()?;
        let port = url.port_or_known_default().unwrap_or(0);
        Some(Self(format!("{host}:{port}")))
    }
}

/// A run's number, unique and increasing within one state directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(pub u64);

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
