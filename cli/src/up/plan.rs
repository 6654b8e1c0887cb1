//! What the development instance contains: its security servers, clients, example services
//! and access rights. The central server's part (members, subsystems, settings) is
//! `configs/dev-up.toml`; these identifiers must match it.

/// The instance identifier.
pub(crate) const INSTANCE: &str = "DEV";

/// One security server of the development instance.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SsPlan {
    /// Server code.
    pub(crate) code: &'static str,
    /// Owner member.
    pub(crate) owner: &'static str,
    /// Owner name (certificate subjects).
    pub(crate) owner_name: &'static str,
    /// The client subsystem hosted on it.
    pub(crate) client: &'static str,
}

/// The two ministries' security servers, in port order.
pub(crate) const SECURITY_SERVERS: [SsPlan; 2] = [
    SsPlan {
        code: "ss1",
        owner: "DEV/GOV/1001",
        owner_name: "Ministry of Finance",
        client: "DEV/GOV/1001/tax-portal",
    },
    SsPlan {
        code: "ss2",
        owner: "DEV/GOV/1002",
        owner_name: "Population Register",
        client: "DEV/GOV/1002/registry",
    },
];

/// The consumer subsystem the printed commands and the SDK examples call from.
pub(crate) const CONSUMER: &str = "DEV/GOV/1001/tax-portal";

/// The client of the third security server registered by docs/operator-guide.md (its member
/// is in `configs/dev-up.toml`, its server is not part of `trustbus up`).
pub(crate) const THIRD_PARTY_CLIENT: &str = "DEV/COM/12345678/erp";

/// Kind of an example service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// REST (`/r1/`).
    Rest,
    /// SOAP 4.0.
    Soap,
}

/// An example service on the provider's security server (ss2).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServicePlan {
    /// Service id.
    pub(crate) id: &'static str,
    /// REST or SOAP.
    pub(crate) kind: Kind,
    /// Path of the backend on the examples listener.
    pub(crate) backend_path: &'static str,
    /// The clients granted access (one service stays default-deny to show access denied).
    pub(crate) granted_to: &'static [&'static str],
    /// Name in `endpoints.json` `services`.
    pub(crate) name: &'static str,
    /// For a service only for end users the bus verified: the weakest `acr` it accepts.
    pub(crate) verified_user_acr: Option<&'static str>,
}

/// Index of the provider server in [`SECURITY_SERVERS`].
pub(crate) const PROVIDER: usize = 1;

/// The example services.
pub(crate) const SERVICES: [ServicePlan; 5] = [
    ServicePlan {
        id: "DEV/GOV/1002/registry/persons",
        kind: Kind::Rest,
        backend_path: "/persons",
        // Also the client of the third security server that docs/operator-guide.md adds.
        granted_to: &[CONSUMER, THIRD_PARTY_CLIENT],
        name: "population_register",
        verified_user_acr: None,
    },
    ServicePlan {
        id: "DEV/GOV/1002/registry/getPerson",
        kind: Kind::Soap,
        backend_path: "/soap",
        granted_to: &[CONSUMER],
        name: "population_register_soap",
        verified_user_acr: None,
    },
    ServicePlan {
        id: "DEV/GOV/1002/registry/citizen",
        kind: Kind::Rest,
        backend_path: "/citizen",
        granted_to: &[CONSUMER],
        name: "citizen_records",
        // The example OpenID provider logs citizens in at `substantial` unless asked for more.
        verified_user_acr: Some("substantial"),
    },
    ServicePlan {
        id: "DEV/GOV/1002/registry/statistics",
        kind: Kind::Rest,
        backend_path: "/statistics",
        granted_to: &[],
        name: "not_granted",
        verified_user_acr: None,
    },
    // What `scripts/bench` sends through the bus: the same POST echo as its direct baseline.
    ServicePlan {
        id: "DEV/GOV/1002/registry/echo",
        kind: Kind::Rest,
        backend_path: "/echo",
        granted_to: &[CONSUMER],
        name: "echo",
        verified_user_acr: None,
    },
];

/// The person the examples ask about (the example register knows it).
pub(crate) const EXAMPLE_PERSON: &str = "38001085718";

/// The citizen the example OpenID provider logs in automatically.
pub(crate) const CITIZEN: &str = "EE38001085718";

/// The portal's client id at the example OpenID provider (also the ID tokens' audience).
pub(crate) const OIDC_CLIENT_ID: &str = "citizen-portal";
