//! Shared by the `db-dump` and `db-restore` plugins: finding `DATABASE_URL` in a `.env` file
//! ([`dotenv::lookup`]) and turning it into what `pg_dump`/`pg_restore` take ([`url::parse`]).
//! Nothing here ever puts the URL or the password into an error.

pub mod dotenv;
pub mod url;
