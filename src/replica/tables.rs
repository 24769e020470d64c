//! Tables for clients: creating, dropping and listing them, and reading
//! and writing the keys of a table, siblings included (the store's
//! [`tables`](crate::store::tables) module says how they are kept).

use crate::causal::{CausalContext, Dot, VectorClock};
use crate::store::tables::{default_key, sibling_key};
use crate::store::{etag, Key, Sibling, Table, TableInfo, TableName, Value};

use super::outputs::{Condition, Learned, Outcome, ReadResult, Wait, WriteResult};
use super::state::Replica;

/// What a table's creation or drop did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableOutcome {
    /// The table was created.
    Created,
    /// It existed already: nothing was written.
    Existed,
    /// It was dropped.
    Dropped,
    /// It does not exist: nothing was written.
    NotFound,
}

/// The answer to a table's creation or drop.
#[derive(Clone, Debug, PartialEq)]
pub struct TableResult {
    /// What it did.
    pub outcome: TableOutcome,
    /// The table, when it is live after the request.
    pub table: Option<TableInfo>,
    /// What the client learns.
    pub learned: Learned,
}

/// Where a client's key is kept.
enum Place {
    /// One version under this stored key, whose writes depend on `table`'s
    /// creation (if any).
    Single(Key, Option<Dot>),
    /// Siblings under this base key, of a table created by this dot.
    Siblings(Key, Dot),
    /// The table is not live here.
    NoTable,
}

impl Replica {
    fn place(&self, table: Option<&TableName>, key: Key) -> Place {
        let Some(name) = table else {
            return Place::Single(default_key(key), None);
        };
        let (Some(live), Some(meta)) = (self.store.table(name), self.store.entry(&name.meta_key()))
        else {
            return Place::NoTable;
        };
        let created = meta.dot();
        match live.siblings {
            true => Place::Siblings(live.key(&key), created),
            false => Place::Single(live.key(&key), Some(created)),
        }
    }

    fn info(&self, table: &Table) -> Option<TableInfo> {
        self.store.table_info(&table.name)
    }

    /// The live siblings of `base`: `(value, dot)` of each that holds a
    /// value, by rank (the conflict rule's winner first), and the dots of
    /// every sibling, delete markers included.
    fn siblings(&self, base: &Key) -> (Vec<(Value, Dot)>, Vec<Dot>) {
        let mut held = self.store.siblings(base);
        held.sort_by(|a, b| {
            let rank = |e: &crate::store::Entry<'_>| (e.lamport(), e.dot());
            rank(b).cmp(&rank(a))
        });
        let dots = held.iter().map(|e| e.dot()).collect();
        let live = held
            .iter()
            .filter_map(|e| {
                let value = e.value_json().and_then(Sibling::decode)?.value?;
                Some((value, e.dot()))
            })
            .collect();
        (live, dots)
    }

    /// What a write to `base` with `context` has seen: the context, and
    /// all that each sibling it names had seen. So what one write saw, the
    /// writes that saw it saw too, and a replica that takes a write
    /// without the ones between (a peer's current versions, in a pull)
    /// still removes every value it replaced.
    fn seen_by(&self, base: &Key, context: &CausalContext) -> VectorClock {
        let mut seen = context.clock().clone();
        for entry in self.store.siblings(base) {
            if let Some(sibling) = entry.value_json().and_then(Sibling::decode) {
                if sibling.seen_in(&entry.dot(), context.clock()) {
                    seen.merge(&sibling.seen);
                }
            }
        }
        seen
    }

    /// What a client learns from the versions with `dots`.
    fn learn_all(&self, dots: &[Dot]) -> VectorClock {
        let mut clock = VectorClock::new();
        for dot in dots {
            clock.merge(&self.learn(dot));
        }
        clock
    }

    /// Reads client key `key` of `table` (`None`: the default table).
    pub fn read_in(
        &self,
        table: Option<&TableName>,
        key: Key,
        context: &CausalContext,
    ) -> Result<ReadResult, Wait> {
        let pruned = self.admit(context)?;
        match self.place(table, key) {
            Place::Single(key, _) => self.read_stored(&key, pruned),
            Place::NoTable => Ok(ReadResult {
                no_table: true,
                ..ReadResult::absent(pruned)
            }),
            Place::Siblings(base, _) => {
                let (live, dots) = self.siblings(&base);
                let clock = self.learn_all(&dots);
                let mut result = ReadResult::absent(pruned);
                result.learned.clock = clock;
                match live.len() {
                    0 => {}
                    1 => {
                        let (value, dot) = live.into_iter().next().expect("one");
                        result.etag = Some(etag(&dot));
                        result.value = Some(value);
                    }
                    _ => result.siblings = live.into_iter().map(|(v, _)| v).collect(),
                }
                Ok(result)
            }
        }
    }

    /// Writes (`None`: deletes) client key `key` of `table` if `condition`
    /// holds (see [`Replica::write_if`]).
    pub fn write_in(
        &mut self,
        table: Option<&TableName>,
        key: Key,
        value: Option<Value>,
        context: &CausalContext,
        condition: &Condition,
    ) -> Result<WriteResult, Wait> {
        if self.draining {
            return Err(Wait::ShuttingDown);
        }
        let pruned = self.admit(context)?;
        match self.place(table, key) {
            Place::Single(key, created) => {
                self.write_stored(key, value, context, condition, pruned, created)
            }
            Place::NoTable => Ok(WriteResult {
                etag: None,
                outcome: Outcome::NoTable,
                learned: Learned {
                    clock: VectorClock::new(),
                    pruned,
                },
            }),
            Place::Siblings(base, created) => {
                let (live, dots) = self.siblings(&base);
                let tags: Vec<String> = live.iter().map(|(_, d)| etag(d)).collect();
                let existed = !live.is_empty();
                let unmet = !condition.holds_for_all(&tags);
                if unmet || (value.is_none() && !existed) {
                    return Ok(WriteResult {
                        etag: (tags.len() == 1).then(|| tags[0].clone()),
                        outcome: if unmet {
                            Outcome::Unmet
                        } else {
                            Outcome::NotFound
                        },
                        learned: Learned {
                            clock: self.learn_all(&dots),
                            pruned,
                        },
                    });
                }
                let mut deps = pruned.as_ref().unwrap_or(context.clock()).clone();
                deps.observe(&created);
                let stored = Sibling::encode(value.as_ref(), &self.seen_by(&base, context));
                let is_delete = value.is_none();
                let dot = self.issue_as(|dot| sibling_key(&base, dot), Some(stored), deps);
                Ok(WriteResult {
                    etag: (!is_delete).then(|| etag(&dot)),
                    outcome: match (is_delete, existed) {
                        (true, _) => Outcome::Deleted,
                        (false, true) => Outcome::Updated,
                        (false, false) => Outcome::Created,
                    },
                    learned: Learned {
                        clock: self.with_map_version(super::state::single(&dot)),
                        pruned,
                    },
                })
            }
        }
    }

    /// Creates table `name`, with siblings or not, unless it is live
    /// here (under the id its record here names: see
    /// [`crate::store::tables`]).
    pub fn create_table(
        &mut self,
        name: &TableName,
        siblings: bool,
        context: &CausalContext,
    ) -> Result<TableResult, Wait> {
        if self.draining {
            return Err(Wait::ShuttingDown);
        }
        let pruned = self.admit(context)?;
        if let Some(table) = self.store.table(name) {
            let dot = self.store.entry(&name.meta_key()).map(|e| e.dot());
            return Ok(TableResult {
                outcome: TableOutcome::Existed,
                table: self.info(table),
                learned: Learned {
                    clock: dot.map(|d| self.learn(&d)).unwrap_or_default(),
                    pruned,
                },
            });
        }
        let deps = pruned.as_ref().unwrap_or(context.clock()).clone();
        let settings = Table::settings(siblings, self.store.next_table_id(name));
        let dot = self.issue(name.meta_key(), Some(settings), deps);
        Ok(TableResult {
            outcome: TableOutcome::Created,
            table: Some(TableInfo {
                name: name.as_str().to_string(),
                siblings,
                keys: 0,
            }),
            learned: Learned {
                clock: self.with_map_version(super::state::single(&dot)),
                pruned,
            },
        })
    }

    /// Drops table `name` if it is live here: its keys are forgotten
    /// everywhere the drop is applied; `next` (drawn by the caller) is the
    /// id its next creation takes.
    pub fn drop_table(
        &mut self,
        name: &TableName,
        next: &str,
        context: &CausalContext,
    ) -> Result<TableResult, Wait> {
        if self.draining {
            return Err(Wait::ShuttingDown);
        }
        let pruned = self.admit(context)?;
        if self.store.table(name).is_none() {
            let dot = self.store.entry(&name.meta_key()).map(|e| e.dot());
            return Ok(TableResult {
                outcome: TableOutcome::NotFound,
                table: None,
                learned: Learned {
                    clock: dot.map(|d| self.learn(&d)).unwrap_or_default(),
                    pruned,
                },
            });
        }
        let deps = pruned.as_ref().unwrap_or(context.clock()).clone();
        let dot = self.issue(name.meta_key(), Some(Table::dropped(next)), deps);
        Ok(TableResult {
            outcome: TableOutcome::Dropped,
            table: None,
            learned: Learned {
                clock: self.with_map_version(super::state::single(&dot)),
                pruned,
            },
        })
    }

    /// The live tables, by name, and what listing them teaches: their
    /// creations.
    pub fn list_tables(&self, context: &CausalContext) -> Result<(Vec<TableInfo>, Learned), Wait> {
        let pruned = self.admit(context)?;
        let tables = self.store.tables();
        let dots: Vec<Dot> = tables
            .iter()
            .filter_map(|t| TableName::parse(&t.name))
            .filter_map(|n| self.store.entry(&n.meta_key()).map(|e| e.dot()))
            .collect();
        let clock = self.learn_all(&dots);
        Ok((tables, Learned { clock, pruned }))
    }

    /// Forgets the keys of tables no longer live, once this replica holds
    /// a whole copy (see [`crate::store::Store::collect_orphans`]).
    pub(super) fn collect_orphans(&mut self) {
        if !self.is_synced() || self.transfer.is_some() {
            return;
        }
        let collected = self.store.collect_orphans();
        if collected > 0 {
            self.progress += 1;
            tracing::info!(collected, "keys of dropped tables forgotten");
        }
    }
}
