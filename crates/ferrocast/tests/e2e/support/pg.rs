//! A PostgreSQL schema private to one test, through `psql`, like the store's own tests: the
//! server gets `TEST_DATABASE_URL` with `options[search_path]=<schema>`.

use super::proc::run;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A schema created for one test and dropped (with everything in it) on drop.
#[derive(Debug)]
pub struct PgSchema {
    base: String,
    pub name: String,
}

impl PgSchema {
    /// `None`, after printing a note, when `TEST_DATABASE_URL` is not set.
    pub fn create(test: &str) -> Option<PgSchema> {
        let Ok(base) = std::env::var("TEST_DATABASE_URL") else {
            eprintln!("{test}: TEST_DATABASE_URL not set, skipping the PostgreSQL run");
            return None;
        };
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!("e2e_{test}_{}_{nanos}", std::process::id());
        let schema = PgSchema { base, name };
        schema.psql(&format!("CREATE SCHEMA \"{}\"", schema.name));
        Some(schema)
    }

    /// The database URL the server should use: the test database, this schema first.
    pub fn url(&self) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{sep}options[search_path]={}", self.base, self.name)
    }

    /// Runs `sql` with psql (stopping at the first error) and returns its unaligned output.
    pub fn psql(&self, sql: &str) -> String {
        let out = run(
            Command::new("psql").arg(&self.base).args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ]),
            Duration::from_secs(20),
        );
        assert!(
            out.success(),
            "psql {sql:?} failed ({:?}):\n{}",
            out.status,
            out.stderr
        );
        out.stdout.trim().to_owned()
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let _ = run(
            Command::new("psql").arg(&self.base).args([
                "-X",
                "-q",
                "-c",
                &format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name),
            ]),
            Duration::from_secs(20),
        );
    }
}
