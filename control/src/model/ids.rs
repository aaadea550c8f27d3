//! Newtype ids, one per kind of resource and owner, so a `VpcId` cannot be passed where a
//! `SubnetId` is meant.
//!
//! Ids are opaque strings on the wire and in the store (`#[serde(transparent)]`, so stored
//! records keep their shape). The ones vpcep creates are UUIDs; ids from a path or a body are
//! taken as given, and an id that names nothing is simply not found. `Borrow<str>` lets the
//! model's maps be searched with a `&str`.

use std::borrow::Borrow;
use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A new random (UUID v4) id.
            pub fn random() -> Self {
                Self(uuid::Uuid::new_v4().to_string())
            }

            /// The id as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_string())
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                self.0 == *other
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id!(
    /// An account (IAM domain); whitelists admit accounts.
    DomainId
);
id!(
    /// A project (tenant); resources belong to one.
    ProjectId
);
id!(
    /// A VPC of the inventory.
    VpcId
);
id!(
    /// A subnet of the inventory.
    SubnetId
);
id!(
    /// A port (NIC or VIP) of the inventory.
    PortId
);
id!(
    /// An endpoint service.
    ServiceId
);
id!(
    /// A whitelist entry of a service.
    PermissionId
);
id!(
    /// An endpoint (one connection to a service).
    EndpointId
);
