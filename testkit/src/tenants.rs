//! The test tenants: three accounts (domain and project) with their key pairs, as the
//! daemon's credentials file and the API tests know them. A provider publishes, a user
//! connects, a stranger sees nothing of either.

use control::auth::{Credential, Credentials};

/// (AK, SK, domain id, project id) of the provider.
pub const PROVIDER: (&str, &str, &str, &str) = (
    "PROVIDERAK0000000001",
    "provider-secret",
    "dprovider",
    "pprovider",
);
/// (AK, SK, domain id, project id) of the user.
pub const USER: (&str, &str, &str, &str) =
    ("USERAK00000000000001", "user-secret", "duser", "puser");
/// (AK, SK, domain id, project id) of a second user, in an account of its own (a world
/// built with [`crate::World::with_tenants`] gives it user VPCs).
pub const USER2: (&str, &str, &str, &str) =
    ("USER2AK0000000000001", "user2-secret", "duser2", "puser2");
/// (AK, SK, domain id, project id) of an account that is neither.
pub const STRANGER: (&str, &str, &str, &str) = (
    "STRANGERAK0000000001",
    "stranger-secret",
    "dstranger",
    "pstranger",
);

/// The three tenants' key pairs, as the daemon takes them.
///
/// # Panics
/// Never: the fixtures are valid credentials.
pub fn credentials() -> Credentials {
    credentials_of(&[PROVIDER, USER, STRANGER])
}

/// The key pairs of `tenants` (AK, SK, domain id, project id), as the daemon takes them.
///
/// # Panics
/// If they are not valid credentials (a fixture's mistake).
pub fn credentials_of(tenants: &[(&str, &str, &str, &str)]) -> Credentials {
    Credentials::from_list(
        tenants
            .iter()
            .map(|(ak, sk, d, p)| Credential {
                ak: (*ak).into(),
                sk: (*sk).into(),
                domain_id: (*d).into(),
                project_id: (*p).into(),
            })
            .collect(),
    )
    .expect("valid credentials")
}

/// `tenants` as the daemon's credentials file (TOML).
pub fn credentials_toml(tenants: &[(&str, &str, &str, &str)]) -> String {
    tenants
        .iter()
        .map(|(ak, sk, d, p)| {
            format!(
                "[[credentials]]\nak = \"{ak}\"\nsk = \"{sk}\"\ndomain_id = \"{d}\"\nproject_id = \"{p}\"\n"
            )
        })
        .collect()
}
