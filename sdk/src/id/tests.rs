use super::*;
use proptest::prelude::*;

fn tax_board() -> ClientId {
    ClientId::subsystem("DEV", "GOV", "1234", "tax-board").unwrap()
}

#[test]
fn client_forms() {
    let c = tax_board();
    assert_eq!(c.to_slash(), "DEV/GOV/1234/tax-board");
    assert_eq!(c.to_string(), "SUBSYSTEM:DEV/GOV/1234/tax-board");
    assert_eq!(ClientId::from_slash("DEV/GOV/1234/tax-board").unwrap(), c);
    assert_eq!(
        ClientId::from_display("SUBSYSTEM:DEV/GOV/1234/tax-board").unwrap(),
        c
    );
    let m = ClientId::member("DEV", "GOV", "1234").unwrap();
    assert_eq!(m.to_string(), "MEMBER:DEV/GOV/1234");
    assert_eq!(c.owner(), m);
    assert_eq!(m.object_type(), ObjectType::Member);
}

#[test]
fn percent_encoding_in_slash_form() {
    let c = ClientId::subsystem("EE", "GOV", "70000?1", "a=b+c,d").unwrap();
    assert_eq!(c.to_slash(), "EE/GOV/70000%3F1/a%3Db%2Bc%2Cd");
    assert_eq!(
        ClientId::from_slash("EE/GOV/70000%3F1/a%3Db%2Bc%2Cd").unwrap(),
        c
    );
    // Encoding of allowed characters is optional on input.
    assert_eq!(
        ClientId::from_slash("D%45V/GOV/1234/tax-board")
            .unwrap()
            .instance(),
        "DEV"
    );
}

#[test]
fn rejections_are_typed() {
    assert_eq!(
        ClientId::from_slash("DEV/GOV/12 34"),
        Err(IdError::InvalidChar {
            field: "memberCode",
            ch: ' '
        })
    );
    assert_eq!(
        ClientId::from_slash("DEV/GOV/1234/a%2Fb"),
        Err(IdError::InvalidChar {
            field: "subsystemCode",
            ch: '/'
        })
    );
    assert_eq!(
        ClientId::from_slash("DEV//1234"),
        Err(IdError::Empty {
            field: "memberClass"
        })
    );
    assert_eq!(
        ClientId::from_slash("DEV/GOV"),
        Err(IdError::SegmentCount {
            kind: "client",
            expected: "3 (member) or 4 (subsystem)",
            found: 2
        })
    );
    assert_eq!(
        ClientId::from_slash("DEV/GOV/%zz"),
        Err(IdError::BadPercentEncoding {
            segment: "%zz".into()
        })
    );
    assert_eq!(
        ClientId::from_slash("DEV/GOV/%C3%28"),
        Err(IdError::BadPercentEncoding {
            segment: "%C3%28".into()
        })
    );
    assert_eq!(
        ClientId::from_slash("DEV/GOV/%C3%A4"),
        Err(IdError::InvalidChar {
            field: "memberCode",
            ch: 'ä'
        })
    );
    assert_eq!(
        ClientId::from_display("MEMBER:DEV/GOV/1234/sub"),
        Err(IdError::WrongObjectType {
            expected: "SUBSYSTEM",
            found: ObjectType::Member
        })
    );
    assert_eq!(
        ClientId::from_display("MEMBR:DEV/GOV/1234"),
        Err(IdError::UnknownObjectType("MEMBR".into()))
    );
    assert_eq!(
        ClientId::from_display("DEV/GOV/1234"),
        Err(IdError::UnknownObjectType(String::new()))
    );
    let long = "a".repeat(MAX_SEGMENT_LEN + 1);
    assert_eq!(
        ClientId::member("DEV", "GOV", &long),
        Err(IdError::TooLong {
            field: "memberCode"
        })
    );
    assert_eq!(
        ServiceId::from_display("SUBSYSTEM:DEV/GOV/1234/x"),
        Err(IdError::WrongObjectType {
            expected: "SERVICE",
            found: ObjectType::Subsystem
        })
    );
}

#[test]
fn every_allowed_punctuation_is_accepted_and_nothing_else() {
    for c in "'()+,-.=?".chars() {
        assert!(is_allowed_char(c), "{c}");
    }
    for c in "/:;!\"#$%&*<>@[\\]^_`{|}~ \t".chars() {
        assert!(!is_allowed_char(c), "{c}");
    }
}

#[test]
fn service_forms() {
    let s = ServiceId::new(tax_board(), "getPerson", Some("v1")).unwrap();
    assert_eq!(s.to_slash(), "DEV/GOV/1234/tax-board/getPerson/v1");
    assert_eq!(s.to_string(), "SERVICE:DEV/GOV/1234/tax-board/getPerson/v1");
    assert_eq!(ServiceId::from_slash(&s.to_slash()).unwrap(), s);
    assert_eq!(ServiceId::from_display(&s.to_string()).unwrap(), s);
    assert_eq!(
        s.without_version().to_slash(),
        "DEV/GOV/1234/tax-board/getPerson"
    );
    let member_level = ServiceId::from_slash("DEV/GOV/1234/getPerson").unwrap();
    assert_eq!(member_level.provider().object_type(), ObjectType::Member);
    assert_eq!(
        ServiceId::from_slash("DEV/GOV"),
        Err(IdError::SegmentCount {
            kind: "service",
            expected: "4 to 6",
            found: 2
        })
    );
}

#[test]
fn server_and_groups() {
    let ss = SecurityServerId::new(&tax_board(), "ss1").unwrap();
    assert_eq!(ss.owner(), &tax_board().owner());
    assert_eq!(ss.to_slash(), "DEV/GOV/1234/ss1");
    assert_eq!(ss.to_string(), "SERVER:DEV/GOV/1234/ss1");
    assert_eq!(
        SecurityServerId::from_display("SERVER:DEV/GOV/1234/ss1").unwrap(),
        ss
    );
    let g = GlobalGroupId::new("DEV", "security-server-owners").unwrap();
    assert_eq!(g.to_string(), "GLOBALGROUP:DEV/security-server-owners");
    assert_eq!(
        GlobalGroupId::from_slash("DEV/security-server-owners").unwrap(),
        g
    );
    let l = LocalGroupId::new("auditors").unwrap();
    assert_eq!(l.to_string(), "LOCALGROUP:auditors");
    assert_eq!(
        XRoadId::from_display("LOCALGROUP:auditors").unwrap(),
        XRoadId::LocalGroup(l)
    );
}

#[test]
fn xml_form() {
    let id = XRoadId::Client(tax_board());
    let mut out = String::new();
    id.write_xml(&mut out, "xrd:client", "id");
    assert_eq!(
        out,
        "<xrd:client id:objectType=\"SUBSYSTEM\"><id:xRoadInstance>DEV</id:xRoadInstance>\
         <id:memberClass>GOV</id:memberClass><id:memberCode>1234</id:memberCode>\
         <id:subsystemCode>tax-board</id:subsystemCode></xrd:client>"
    );
    let fields: Vec<(IdField, String)> = id
        .xml_fields()
        .into_iter()
        .map(|(f, v)| (f, v.to_owned()))
        .collect();
    assert_eq!(
        XRoadId::from_xml_fields(ObjectType::Subsystem, &fields).unwrap(),
        id
    );
}

#[test]
fn xml_field_rules() {
    use IdField::*;
    let f = |v: &[(IdField, &str)]| -> Vec<(IdField, String)> {
        v.iter().map(|(a, b)| (*a, (*b).to_owned())).collect()
    };
    // Missing subsystem code for a SUBSYSTEM.
    assert_eq!(
        XRoadId::from_xml_fields(
            ObjectType::Subsystem,
            &f(&[(Instance, "DEV"), (MemberClass, "GOV"), (MemberCode, "1")])
        ),
        Err(IdError::MissingField {
            object_type: ObjectType::Subsystem,
            field: "subsystemCode"
        })
    );
    // A field the type does not have.
    assert_eq!(
        XRoadId::from_xml_fields(
            ObjectType::Member,
            &f(&[
                (Instance, "DEV"),
                (MemberClass, "GOV"),
                (MemberCode, "1"),
                (ServerCode, "x")
            ])
        ),
        Err(IdError::UnexpectedField {
            object_type: ObjectType::Member,
            field: "serverCode".into()
        })
    );
    // Out of order.
    assert_eq!(
        XRoadId::from_xml_fields(
            ObjectType::Member,
            &f(&[(MemberClass, "GOV"), (Instance, "DEV"), (MemberCode, "1")])
        ),
        Err(IdError::UnexpectedField {
            object_type: ObjectType::Member,
            field: "xRoadInstance".into()
        })
    );
    // Twice.
    assert_eq!(
        XRoadId::from_xml_fields(
            ObjectType::Member,
            &f(&[
                (Instance, "DEV"),
                (Instance, "DEV"),
                (MemberClass, "GOV"),
                (MemberCode, "1")
            ])
        ),
        Err(IdError::UnexpectedField {
            object_type: ObjectType::Member,
            field: "xRoadInstance".into()
        })
    );
    // Surrounding whitespace in element text is not part of the value.
    let svc = XRoadId::from_xml_fields(
        ObjectType::Service,
        &f(&[
            (Instance, " DEV\n"),
            (MemberClass, "GOV"),
            (MemberCode, "1"),
            (ServiceCode, "getX"),
        ]),
    )
    .unwrap();
    assert_eq!(svc.to_string(), "SERVICE:DEV/GOV/1/getX");
}

#[test]
fn represented_party() {
    let p = RepresentedParty::from_slash("COM/12345").unwrap();
    assert_eq!((p.party_class(), p.party_code()), (Some("COM"), "12345"));
    assert_eq!(
        RepresentedParty::from_slash("12345").unwrap().party_class(),
        None
    );
    assert!(RepresentedParty::from_slash("a/b/c").is_err());
}

#[test]
fn serde_uses_slash_form() {
    let json = serde_json::to_string(&tax_board()).unwrap();
    assert_eq!(json, "\"DEV/GOV/1234/tax-board\"");
    let back: ClientId = serde_json::from_str(&json).unwrap();
    assert_eq!(back, tax_board());
    assert!(serde_json::from_str::<ClientId>("\"DEV/GOV\"").is_err());
}

fn seg() -> impl Strategy<Value = String> {
    "[A-Za-z0-9'()+,\\-.=?]{1,12}"
}

fn client() -> impl Strategy<Value = ClientId> {
    (seg(), seg(), seg(), proptest::option::of(seg())).prop_map(|(i, c, m, s)| match s {
        Some(s) => ClientId::subsystem(&i, &c, &m, &s).unwrap(),
        None => ClientId::member(&i, &c, &m).unwrap(),
    })
}

fn service() -> impl Strategy<Value = ServiceId> {
    (client(), seg(), proptest::option::of(seg()))
        .prop_filter(
            "member-level versioned services are ambiguous in string forms",
            |(c, _, v)| c.subsystem_code().is_some() || v.is_none(),
        )
        .prop_map(|(c, code, v)| ServiceId::new(c, &code, v.as_deref()).unwrap())
}

fn xml_round_trip(id: &XRoadId) -> XRoadId {
    let fields: Vec<(IdField, String)> = id
        .xml_fields()
        .into_iter()
        .map(|(f, v)| (f, v.to_owned()))
        .collect();
    XRoadId::from_xml_fields(id.object_type(), &fields).unwrap()
}

proptest! {
    #[test]
    fn client_round_trips(c in client()) {
        prop_assert_eq!(&ClientId::from_slash(&c.to_slash()).unwrap(), &c);
        prop_assert_eq!(&ClientId::from_display(&c.to_string()).unwrap(), &c);
        let any = XRoadId::Client(c);
        prop_assert_eq!(&xml_round_trip(&any), &any);
        prop_assert_eq!(&XRoadId::from_display(&any.to_string()).unwrap(), &any);
    }

    #[test]
    fn service_round_trips(s in service()) {
        prop_assert_eq!(&ServiceId::from_slash(&s.to_slash()).unwrap(), &s);
        prop_assert_eq!(&ServiceId::from_display(&s.to_string()).unwrap(), &s);
        let any = XRoadId::Service(s);
        prop_assert_eq!(&xml_round_trip(&any), &any);
    }

    #[test]
    fn version_blind_comparison_and_key_agree_with_the_unversioned_copy(
        a in service(),
        b in service(),
        v in proptest::option::of(seg()),
    ) {
        let other_version = ServiceId::new(a.provider().clone(), a.code(), v.as_deref()).unwrap();
        prop_assert!(a.same_service(&other_version));
        prop_assert_eq!(a.same_service(&b), a.without_version() == b.without_version());
        prop_assert_eq!(a.to_slash_without_version(), a.without_version().to_slash());
    }

    #[test]
    fn member_level_versioned_service_round_trips_through_xml(c in client(), code in seg(), v in seg()) {
        let s = XRoadId::Service(ServiceId::new(c.owner(), &code, Some(&v)).unwrap());
        prop_assert_eq!(&xml_round_trip(&s), &s);
    }

    #[test]
    fn server_and_group_round_trips(c in client(), code in seg(), inst in seg(), g in seg()) {
        let ss = SecurityServerId::new(&c, &code).unwrap();
        prop_assert_eq!(&SecurityServerId::from_slash(&ss.to_slash()).unwrap(), &ss);
        prop_assert_eq!(&SecurityServerId::from_display(&ss.to_string()).unwrap(), &ss);
        let gg = GlobalGroupId::new(&inst, &g).unwrap();
        prop_assert_eq!(&GlobalGroupId::from_slash(&gg.to_slash()).unwrap(), &gg);
        prop_assert_eq!(&GlobalGroupId::from_display(&gg.to_string()).unwrap(), &gg);
        let lg = LocalGroupId::new(&g).unwrap();
        prop_assert_eq!(&LocalGroupId::from_slash(&lg.to_slash()).unwrap(), &lg);
        for any in [XRoadId::Server(ss), XRoadId::GlobalGroup(gg), XRoadId::LocalGroup(lg)] {
            prop_assert_eq!(&xml_round_trip(&any), &any);
            prop_assert_eq!(&XRoadId::from_display(&any.to_string()).unwrap(), &any);
        }
    }

    #[test]
    fn slash_parsers_never_panic(s in "\\PC{0,64}") {
        let _ = ClientId::from_slash(&s);
        let _ = ServiceId::from_slash(&s);
        let _ = SecurityServerId::from_slash(&s);
        let _ = XRoadId::from_display(&s);
        let _ = RepresentedParty::from_slash(&s);
    }

    #[test]
    fn encoded_form_is_path_safe(c in client()) {
        let slash = c.to_slash();
        prop_assert!(!slash.contains('?') && !slash.contains('+') && !slash.contains('='));
    }
}
