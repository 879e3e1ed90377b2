//! Shared by the blue/green plugins (`layout-migrate`, `release-check`, `release-unpack`,
//! `env-merge`, `health-check`, `symlink-swap`, `upgrade-rollback`, `release-finish`): the
//! names of the layout, the upgrade journal that makes rollback possible after a crash, the
//! marker each release folder carries, the release catalog (`releases.json`), PM2 helpers, the
//! atomic swap of `current` with the PM2 reload and check that follow it ([`swap`]), and release
//! removal that never follows the uploads link ([`tree`]).
//!
//! Layout of a customer folder `C` after `migrate-layout` (plan §3.2):
//!
//! ```text
//! C/releases/<version>/{backend,admin,store}    one folder per installed release
//! C/releases/<version>/.qodify-release.json     its marker (see [`marker`])
//! C/releases/<version>/backend/uploads -> ../../../shared/uploads
//! C/current -> releases/<version>               relative symlink, swapped atomically
//! C/shared/uploads/                             uploads, kept across releases
//! C/backend -> current/backend                  (and admin, store) so old paths keep working
//! C/releases/.upgrade.json                      the journal of the upgrade in progress
//! ```

pub mod catalog;
pub mod duration;
pub mod journal;
pub mod layout;
pub mod marker;
pub mod pm2;
pub mod swap;
pub mod tree;
