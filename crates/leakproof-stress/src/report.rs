//! A run's verdict: cases made of checks, written as JSON, as JUnit XML (what CI
//! systems display as test results) and as a Markdown summary (appended to
//! `$GITHUB_STEP_SUMMARY` when that variable is set).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::{Error, Result};

/// One requirement and what was seen: `"no process outlives the run"`, failed,
/// `"1 left: 4242 sleep 600"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What must hold.
    pub what: String,
    /// Whether it held.
    pub ok: bool,
    /// What was observed, with the numbers.
    pub observed: String,
}

/// One judged unit: a run of the command, a scenario of operations.
#[derive(Debug, Clone, Default)]
pub struct Case {
    /// Its name (`"run 1"`, `"sigterm 2"`).
    pub name: String,
    /// Lines of context (the signal's instant, the output's tail on failure).
    pub notes: Vec<String>,
    /// Key figures (`"exit" = "0"`, `"took" = "0.41 s"`).
    pub figures: Vec<(String, String)>,
    /// The requirements judged.
    pub checks: Vec<Check>,
    /// How long it took.
    pub took: Duration,
}

impl Case {
    /// An empty case named `name`.
    pub fn new(name: impl Into<String>) -> Case {
        Case {
            name: name.into(),
            ..Case::default()
        }
    }

    /// Adds a line of context.
    pub fn note(&mut self, line: impl Into<String>) {
        self.notes.push(line.into());
    }

    /// Adds a key figure.
    pub fn figure(&mut self, name: &str, value: impl Into<String>) {
        self.figures.push((name.to_owned(), value.into()));
    }

    /// Adds a requirement: `what` must hold; `observed` says what was seen.
    pub fn check(&mut self, what: &str, ok: bool, observed: impl Into<String>) {
        self.checks.push(Check {
            what: what.to_owned(),
            ok,
            observed: observed.into(),
        });
    }

    /// `true` when every check held.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    /// The key figures on one line: `exit 0, temp entries left 0`.
    pub fn figures_line(&self) -> String {
        let figures: Vec<String> = self
            .figures
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        figures.join(", ")
    }
}

/// Every case of a run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The suite's name (the command judged, or the harness's name).
    pub suite: String,
    /// The cases, in the order they ran.
    pub cases: Vec<Case>,
    /// Lines of context for the whole run (the seed, the temp root, the platform).
    pub notes: Vec<String>,
    /// How long the whole run took.
    pub took: Duration,
}

/// Where [`Report::write`] put the files.
#[derive(Debug, Clone)]
pub struct Files {
    /// `report.json`.
    pub json: PathBuf,
    /// `junit.xml`.
    pub junit: PathBuf,
    /// `summary.md`.
    pub markdown: PathBuf,
}

impl Report {
    /// Adds a line of context for the whole run.
    pub fn note(&mut self, line: impl Into<String>) {
        self.notes.push(line.into());
    }

    /// `true` when every check of every case held.
    pub fn passed(&self) -> bool {
        self.cases.iter().all(Case::passed)
    }

    /// Checks judged, in all.
    pub fn checks(&self) -> usize {
        self.cases.iter().map(|c| c.checks.len()).sum()
    }

    /// The failed checks, one line each: `"run 2: no process outlives the run: 1 left"`.
    pub fn failures(&self) -> Vec<String> {
        self.cases
            .iter()
            .flat_map(|case| {
                case.checks
                    .iter()
                    .filter(|c| !c.ok)
                    .map(move |c| format!("{}: {}: {}", case.name, c.what, c.observed))
            })
            .collect()
    }

    /// The report as JSON: the suite, whether it passed, and each case with its notes,
    /// figures and checks.
    pub fn to_json(&self) -> Value {
        let cases: Vec<Value> = self
            .cases
            .iter()
            .map(|case| {
                json!({
                    "name": case.name,
                    "passed": case.passed(),
                    "seconds": case.took.as_secs_f64(),
                    "notes": case.notes,
                    "figures": case.figures.iter()
                        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                        .collect::<serde_json::Map<_, _>>(),
                    "checks": case.checks.iter().map(|c| json!({
                        "what": c.what, "ok": c.ok, "observed": c.observed,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "suite": self.suite,
            "passed": self.passed(),
            "seconds": self.took.as_secs_f64(),
            "notes": self.notes,
            "checks": self.checks(),
            "failed": self.failures().len(),
            "cases": cases,
        })
    }

    /// The report as JUnit XML: one `<testcase>` per case, a `<failure>` per failed
    /// check, the notes as its `<system-out>`.
    pub fn junit_xml(&self) -> String {
        let failed = self.cases.iter().filter(|c| !c.passed()).count();
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            xml,
            "<testsuites name=\"leakproof-stress\" tests=\"{}\" failures=\"{failed}\" time=\"{:.3}\">",
            self.cases.len(),
            self.took.as_secs_f64()
        );
        let _ = writeln!(
            xml,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failed}\" errors=\"0\" time=\"{:.3}\">",
            escape(&self.suite),
            self.cases.len(),
            self.took.as_secs_f64()
        );
        for case in &self.cases {
            let _ = write!(
                xml,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
                escape(&self.suite),
                escape(&case.name),
                case.took.as_secs_f64()
            );
            let failures: Vec<&Check> = case.checks.iter().filter(|c| !c.ok).collect();
            if failures.is_empty() && case.notes.is_empty() {
                xml.push_str("/>\n");
                continue;
            }
            xml.push_str(">\n");
            for c in failures {
                let _ = writeln!(
                    xml,
                    "      <failure message=\"{}: {}\" type=\"leak\"/>",
                    escape(&c.what),
                    escape(&c.observed)
                );
            }
            if !case.notes.is_empty() {
                let _ = writeln!(
                    xml,
                    "      <system-out>{}</system-out>",
                    escape(&case.notes.join("\n"))
                );
            }
            xml.push_str("    </testcase>\n");
        }
        xml.push_str("  </testsuite>\n</testsuites>\n");
        xml
    }

    /// A Markdown summary: the verdict, a table of the cases, the failures.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let verdict = if self.passed() { "passed" } else { "FAILED" };
        let _ = writeln!(
            md,
            "### leakproof-stress: `{}` {verdict}\n",
            self.suite.replace('`', "'")
        );
        let _ = writeln!(
            md,
            "{} checks, {} failed, {:.1} s\n",
            self.checks(),
            self.failures().len(),
            self.took.as_secs_f64()
        );
        md.push_str("| case | result | figures |\n|---|---|---|\n");
        for case in &self.cases {
            let _ = writeln!(
                md,
                "| {} | {} | {} |",
                case.name.replace('|', "\\|"),
                if case.passed() { "pass" } else { "**FAIL**" },
                case.figures_line().replace('|', "\\|")
            );
        }
        let failures = self.failures();
        if !failures.is_empty() {
            md.push_str("\nFailures:\n");
            for f in failures {
                let _ = writeln!(md, "- {}", f.replace('\n', " "));
            }
        }
        md
    }

    /// Writes `report.json`, `junit.xml` and `summary.md` into `dir` (created if
    /// missing), and appends the summary to the file `$GITHUB_STEP_SUMMARY` names, if
    /// that variable is set.
    pub fn write(&self, dir: &Path) -> Result<Files> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| Error::Write { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let files = Files {
            json: dir.join("report.json"),
            junit: dir.join("junit.xml"),
            markdown: dir.join("summary.md"),
        };
        let json = serde_json::to_string_pretty(&self.to_json()).unwrap_or_default();
        std::fs::write(&files.json, json + "\n").map_err(io(&files.json))?;
        std::fs::write(&files.junit, self.junit_xml()).map_err(io(&files.junit))?;
        let markdown = self.markdown();
        std::fs::write(&files.markdown, &markdown).map_err(io(&files.markdown))?;
        if let Some(summary) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|s| !s.is_empty()) {
            use std::io::Write;
            let summary = PathBuf::from(summary);
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&summary)
                .and_then(|mut f| writeln!(f, "{markdown}"))
                .map_err(io(&summary))?;
        }
        Ok(files)
    }
}

/// `text` made safe inside an XML attribute or element: the five special characters
/// as entities, and control characters XML 1.0 cannot hold (output may carry any byte)
/// as `?`.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' | '\t' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let mut clean = Case::new("run 1");
        clean.check("exits 0", true, "exit 0");
        let mut leaky = Case::new("run <2>");
        leaky.check(
            "no process outlives the run",
            false,
            "1 left: 42 \"sleep\" & co\u{1}",
        );
        leaky.note("stderr: oops");
        Report {
            suite: "sh -c 'x'".into(),
            cases: vec![clean, leaky],
            ..Report::default()
        }
    }

    #[test]
    fn junit_xml_escapes_what_the_command_printed_and_counts_failures() {
        let xml = sample().junit_xml();
        assert!(xml.contains("tests=\"2\" failures=\"1\""), "{xml}");
        assert!(xml.contains("name=\"run &lt;2&gt;\""), "{xml}");
        assert!(
            xml.contains("1 left: 42 &quot;sleep&quot; &amp; co?"),
            "{xml}"
        );
        assert!(xml.contains("<system-out>stderr: oops</system-out>"));
        assert!(xml.contains(
            "<testcase classname=\"sh -c &apos;x&apos;\" name=\"run 1\" time=\"0.000\"/>"
        ));
    }

    #[test]
    fn json_and_markdown_name_the_failure() {
        let report = sample();
        assert!(!report.passed());
        let json = report.to_json();
        assert_eq!(json["failed"], 1);
        assert_eq!(json["cases"][1]["checks"][0]["ok"], false);
        let md = report.markdown();
        assert!(md.contains("FAILED"));
        assert!(
            md.contains("- run <2>: no process outlives the run: 1 left"),
            "{md}"
        );
    }
}
