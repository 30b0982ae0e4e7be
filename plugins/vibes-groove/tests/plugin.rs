//! groove as vibesd sees it: its name, default, config check, start, group
//! and CLI.

use vibes_groove::{GROUP, Groove};
use vibes_plugin::{Plugin, PluginContext, Start};

#[test]
fn groove_is_named_groove_and_on_by_default() {
    assert_eq!(Groove.name(), "groove");
    assert!(Groove.enabled_by_default());
    assert!(Groove.cli().is_some());
}

#[test]
fn check_config_names_the_bad_key() {
    assert_eq!(Groove.check_config(&toml::Table::new()), Ok(()));
    let bad: toml::Table = "alpha = 2".parse().unwrap();
    let err = Groove.check_config(&bad).unwrap_err();
    assert!(
        err.starts_with("plugins.groove.alpha: must be a number in (0, 1]"),
        "{err}"
    );
    let unknown: toml::Table = "threshold = 2".parse().unwrap();
    let err = Groove.check_config(&unknown).unwrap_err();
    assert!(
        err.starts_with("plugins.groove.threshold: unknown key"),
        "{err}"
    );
    let regex: toml::Table = r#"negative_patterns = ["(oops"]"#.parse().unwrap();
    let err = Groove.check_config(&regex).unwrap_err();
    assert!(
        err.contains("plugins.groove.negative_patterns") && err.contains("(oops"),
        "{err}"
    );
}

#[test]
fn start_opens_the_store_and_runs_one_assessment_group_from_the_beginning() {
    let dir = tempfile::tempdir().unwrap();
    let context = PluginContext {
        data_dir: dir.path().to_owned(),
        config: toml::Table::new(),
        notices: vibes_plugin::Notices::none(),
    };
    let running = Groove.start(&context).unwrap();
    assert!(dir.path().join("groove.sqlite").exists());
    let groups = running.groups();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].name, GROUP);
    assert_eq!(groups[0].name, "assessment");
    assert_eq!(groups[0].start, Start::Beginning);
    // Each call of the factory is a fresh handler over the same store.
    let (a, b) = ((groups[0].handler)(), (groups[0].handler)());
    assert_eq!((a.resume_at(), b.resume_at()), (Some(0), Some(0)));
    let _router: axum::Router = running.routes();
}

#[test]
fn start_refuses_a_bad_config_and_an_unwritable_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let context = PluginContext {
        data_dir: dir.path().to_owned(),
        config: "alpha = 0".parse().unwrap(),
        notices: vibes_plugin::Notices::none(),
    };
    let err = Groove.start(&context).err().unwrap();
    assert!(err.to_string().contains("plugins.groove.alpha"), "{err}");
    let context = PluginContext {
        data_dir: dir.path().join("missing/dir"),
        config: toml::Table::new(),
        notices: vibes_plugin::Notices::none(),
    };
    let err = Groove.start(&context).err().unwrap();
    assert!(
        err.to_string().starts_with("plugin groove: groove store"),
        "{err}"
    );
}

#[test]
fn the_cli_asks_the_routes_and_renders_their_answers() {
    let cli = Groove.cli().unwrap();
    assert_eq!((cli.request)(&[]), Ok("/sessions".to_owned()));
    assert_eq!(
        (cli.request)(&["a/b".to_owned()]),
        Ok("/sessions/a%2Fb".to_owned())
    );
    assert!((cli.request)(&["a".to_owned(), "b".to_owned()]).is_err());
    let out = (cli.render)(&[], &serde_json::json!({"sessions": []}));
    assert_eq!(out, "no sessions assessed yet\n");
}
