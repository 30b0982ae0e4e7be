//! A real headless Chromium for the web UI's tests, driven over the
//! DevTools protocol.
//!
//! Each [`Tab`] records what the page reports as an error (a console
//! error, an uncaught exception, a failed load) so that a test can assert
//! there was none, and saves a screenshot under `target/ui-failures/` when
//! the test fails while it is open. Chromium is Debian's `/usr/bin/chromium`
//! (or `VIBES_CHROMIUM`); without it the tests fail, they do not skip.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chromiumoxide::browser::{Browser as Chromium, BrowserConfig};
use chromiumoxide::cdp::browser_protocol::log::{EnableParams, EventEntryAdded, LogEntryLevel};
use chromiumoxide::cdp::js_protocol::runtime::{
    ConsoleApiCalledType, EventConsoleApiCalled, EventExceptionThrown,
};
use chromiumoxide::page::{Page, ScreenshotParams};
use futures::StreamExt;
use serde::de::DeserializeOwned;

/// How long the page may take to show what a test waits for.
pub(crate) const UI_DEADLINE: Duration = Duration::from_secs(15);

/// One headless Chromium with a fresh profile.
pub(crate) struct Browser {
    chromium: Chromium,
    _events: tokio::task::JoinHandle<()>,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub(crate) async fn launch() -> Self {
        let executable =
            std::env::var("VIBES_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
        assert!(
            std::path::Path::new(&executable).exists(),
            "no Chromium at {executable}: `.ci/run` installs Debian's chromium (or set VIBES_CHROMIUM)"
        );
        let profile = tempfile::tempdir().unwrap();
        let config = BrowserConfig::builder()
            .chrome_executable(&executable)
            .new_headless_mode()
            .no_sandbox()
            .user_data_dir(profile.path())
            .window_size(1280, 900)
            .viewport(None)
            .launch_timeout(Duration::from_secs(60))
            .request_timeout(Duration::from_secs(30))
            // This machine's network is closed: Chromium's own background
            // connections would only fail, noisily.
            .args([
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
            ])
            .build()
            .unwrap();
        let (chromium, mut handler) = Chromium::launch(config).await.unwrap();
        let events = tokio::spawn(async move {
            // An event this crate does not know is not a failure.
            while let Some(_event) = handler.next().await {}
        });
        Self {
            chromium,
            _events: events,
            _profile: profile,
        }
    }

    /// Opens `url` in a new tab named `name` (for its screenshots).
    pub(crate) async fn open(&self, url: &str, name: &str) -> Tab {
        let page = self.chromium.new_page("about:blank").await.unwrap();
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        page.execute(EnableParams::default()).await.unwrap();
        let mut console = page
            .event_listener::<EventConsoleApiCalled>()
            .await
            .unwrap();
        let mut exceptions = page.event_listener::<EventExceptionThrown>().await.unwrap();
        let mut entries = page.event_listener::<EventEntryAdded>().await.unwrap();
        let sink = errors.clone();
        let listening = tokio::spawn(async move {
            loop {
                let error = tokio::select! {
                    Some(event) = console.next() => {
                        if event.r#type != ConsoleApiCalledType::Error {
                            continue;
                        }
                        let args: Vec<String> = event
                            .args
                            .iter()
                            .map(|arg| {
                                arg.value
                                    .as_ref()
                                    .map(ToString::to_string)
                                    .or_else(|| arg.description.clone())
                                    .unwrap_or_default()
                            })
                            .collect();
                        format!("console.error: {}", args.join(" "))
                    }
                    Some(event) = exceptions.next() => {
                        let details = &event.exception_details;
                        format!(
                            "uncaught: {} {}",
                            details.text,
                            details
                                .exception
                                .as_ref()
                                .and_then(|e| e.description.clone())
                                .unwrap_or_default()
                        )
                    }
                    Some(event) = entries.next() => {
                        if event.entry.level != LogEntryLevel::Error {
                            continue;
                        }
                        format!(
                            "log: {} {}",
                            event.entry.text,
                            event.entry.url.clone().unwrap_or_default()
                        )
                    }
                    else => break,
                };
                sink.lock().unwrap().push(error);
            }
        });
        page.goto(url).await.unwrap();
        Tab {
            page,
            errors,
            name: name.to_owned(),
            _listening: listening,
        }
    }
}

/// One page of the UI.
pub(crate) struct Tab {
    pub(crate) page: Page,
    errors: Arc<Mutex<Vec<String>>>,
    name: String,
    _listening: tokio::task::JoinHandle<()>,
}

impl Tab {
    /// The value of a JavaScript expression (awaited if it is a promise).
    pub(crate) async fn eval<T: DeserializeOwned>(&self, expression: &str) -> T {
        match self.page.evaluate(expression).await {
            Ok(result) => match result.into_value() {
                Ok(value) => value,
                Err(err) => {
                    self.fail(&format!("{expression} gave no value: {err}"))
                        .await
                }
            },
            Err(err) => self.fail(&format!("{expression} failed: {err}")).await,
        }
    }

    /// Waits until the expression is true.
    pub(crate) async fn wait(&self, what: &str, expression: &str) {
        let deadline = Instant::now() + UI_DEADLINE;
        let check = format!(
            "(() => {{ try {{ return !!({expression}); }} catch (e) {{ return false; }} }})()"
        );
        loop {
            if self.eval::<bool>(&check).await {
                return;
            }
            if Instant::now() > deadline {
                self.fail(&format!("timed out waiting for {what} ({expression})"))
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for an element and clicks it, as a user would (scrolled into
    /// view, a real mouse event).
    pub(crate) async fn click(&self, selector: &str) {
        self.wait(
            &format!("{selector} to click"),
            &format!("document.querySelector({selector:?})"),
        )
        .await;
        let clicked = match self.page.find_element(selector).await {
            Ok(element) => element.click().await.map(drop),
            Err(err) => Err(err),
        };
        if let Err(err) = clicked {
            self.fail(&format!("cannot click {selector}: {err}")).await;
        }
    }

    /// Replaces the value of an input by typing `text` into it.
    pub(crate) async fn type_into(&self, selector: &str, text: &str) {
        self.wait(
            &format!("{selector} to type into"),
            &format!("document.querySelector({selector:?})"),
        )
        .await;
        let _: bool = self
            .eval(&format!(
                "(() => {{ const el = document.querySelector({selector:?}); el.focus(); el.select && el.select(); return true; }})()"
            ))
            .await;
        let typed = match self.page.find_element(selector).await {
            Ok(element) => element.type_str(text).await.map(drop),
            Err(err) => Err(err),
        };
        if let Err(err) = typed {
            self.fail(&format!("cannot type into {selector}: {err}"))
                .await;
        }
    }

    /// Chooses `value` in a `<select>`, as a user's choice would.
    pub(crate) async fn choose(&self, selector: &str, value: &str) {
        self.wait(
            &format!("{selector} to choose in"),
            &format!("document.querySelector({selector:?})"),
        )
        .await;
        let _: bool = self
            .eval(&format!(
                "(() => {{ const el = document.querySelector({selector:?}); el.value = {value:?}; \
                 el.dispatchEvent(new Event('input', {{bubbles: true}})); \
                 el.dispatchEvent(new Event('change', {{bubbles: true}})); return true; }})()"
            ))
            .await;
    }

    /// The text of the first element matching `selector`.
    pub(crate) async fn text(&self, selector: &str) -> String {
        self.eval(&format!(
            "document.querySelector({selector:?})?.textContent ?? ''"
        ))
        .await
    }

    /// Follows a link of the UI, as a click would.
    pub(crate) async fn go(&self, path: &str) {
        let link = format!("a[href=\"{path}\"]");
        self.click(&link).await;
        self.wait(
            &format!("the URL to be {path}"),
            &format!("location.pathname + location.search === {path:?}"),
        )
        .await;
    }

    /// The errors the page reported so far.
    pub(crate) fn errors(&self) -> Vec<String> {
        self.errors.lock().unwrap().clone()
    }

    /// Asserts that the page reported no error.
    pub(crate) async fn assert_no_errors(&self) {
        let errors = self.errors();
        if !errors.is_empty() {
            self.fail(&format!("the page reported errors: {errors:#?}"))
                .await;
        }
    }

    /// Saves a screenshot to `path`.
    pub(crate) async fn screenshot(&self, path: &std::path::Path) {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        self.page
            .save_screenshot(ScreenshotParams::builder().build(), path)
            .await
            .unwrap();
    }

    /// Fails the test with `why`, after saving a screenshot.
    pub(crate) async fn fail(&self, why: &str) -> ! {
        let path = failure_dir().join(format!("{}.png", self.name));
        let saved = tokio::time::timeout(
            Duration::from_secs(10),
            self.page
                .save_screenshot(ScreenshotParams::builder().build(), &path),
        )
        .await;
        let shot = match saved {
            Ok(Ok(_)) => format!("screenshot: {}", path.display()),
            _ => "no screenshot".to_owned(),
        };
        panic!("{why}\n{shot}\npage errors: {:#?}", self.errors());
    }
}

/// Where failed tests leave their screenshots.
pub(crate) fn failure_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/ui-failures");
    let _ = std::fs::create_dir_all(&dir);
    dir
}
