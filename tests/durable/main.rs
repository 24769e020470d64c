//! End-to-end tests of durable replicas (`DATA_DIR`): real `causalkv`
//! processes on 127.0.0.1, each with its own data directory, killed with
//! SIGKILL and restarted; a wiped, a torn and a corrupt directory; a full
//! disk (a small tmpfs, root only); configuration errors; and memory mode.
//!
//! The crate runs under libtest-mimic (libtest's arguments and output) so
//! that the disk-full tests, which need root to mount a file system, are
//! reported as ignored, with the reason, where they cannot run; under
//! `CI=true` (or `1`) they fail instead, since a CI job that checks
//! nothing must not pass.

#[path = "../common/mod.rs"]
mod common;

mod client;
mod concern;
mod config;
mod crash;
mod damage;
mod diskfull;
mod harness;
mod recovery;
mod tables;

use std::process::ExitCode;

use libtest_mimic::{Arguments, Trial};

fn trial(name: &'static str, test: fn()) -> Trial {
    Trial::test(name, move || {
        test();
        Ok(())
    })
}

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let mut trials = vec![
        trial(
            "concern::a_write_waits_for_its_concern_and_is_kept_when_it_is_not_met",
            concern::a_write_waits_for_its_concern_and_is_kept_when_it_is_not_met,
        ),
        trial(
            "crash::all_replicas_killed_at_once_mid_load_three_rounds",
            crash::all_replicas_killed_at_once_mid_load_three_rounds,
        ),
        trial(
            "crash::all_replicas_killed_at_once_mid_load_three_rounds_under_os",
            crash::all_replicas_killed_at_once_mid_load_three_rounds_under_os,
        ),
        trial(
            "recovery::a_wiped_data_dir_comes_back_as_a_new_incarnation_with_every_key",
            recovery::a_wiped_data_dir_comes_back_as_a_new_incarnation_with_every_key,
        ),
        trial(
            "recovery::without_data_dir_a_restart_takes_a_new_incarnation",
            recovery::without_data_dir_a_restart_takes_a_new_incarnation,
        ),
        trial(
            "damage::a_torn_journal_tail_is_truncated_logged_and_data_kept",
            damage::a_torn_journal_tail_is_truncated_logged_and_data_kept,
        ),
        trial(
            "damage::a_corrupt_journal_is_refused_then_discarded_when_asked",
            damage::a_corrupt_journal_is_refused_then_discarded_when_asked,
        ),
        trial(
            "damage::a_damaged_batch_in_the_middle_of_the_journal_is_not_taken_for_a_torn_tail",
            damage::a_damaged_batch_in_the_middle_of_the_journal_is_not_taken_for_a_torn_tail,
        ),
        trial(
            "config::a_bogus_durability_exits_at_once",
            config::a_bogus_durability_exits_at_once,
        ),
        trial(
            "config::a_data_dir_moved_to_another_address_keeps_its_keys_under_a_new_incarnation",
            config::a_data_dir_moved_to_another_address_keeps_its_keys_under_a_new_incarnation,
        ),
        trial(
            "tables::tables_and_siblings_survive_every_replica_killed_at_once",
            tables::tables_and_siblings_survive_every_replica_killed_at_once,
        ),
    ];
    trials.extend(diskfull::trials());
    libtest_mimic::run(&args, trials).exit_code()
}
