//! Both databases' migrations build the same schema: the same tables with the same
//! columns, so that one SQL text per statement can serve both.

use std::collections::{BTreeMap, BTreeSet};

use errand::storage::Db;

use crate::support::{Backend, TestDb};

/// Every table's column names.
async fn tables(db: &Db) -> BTreeMap<String, BTreeSet<String>> {
    let rows: Vec<(String, String)> = match db {
        Db::Sqlite(sqlite) => sqlx::query_as(
            "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '_sqlx%'",
        )
        .fetch_all(&sqlite.reader)
        .await
        .unwrap(),
        Db::Postgres(pool) => sqlx::query_as(
            "SELECT table_name::text, column_name::text FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name NOT LIKE '\\_sqlx%'",
        )
        .fetch_all(pool)
        .await
        .unwrap(),
    };
    let mut tables: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (table, column) in rows {
        tables.entry(table).or_default().insert(column);
    }
    tables
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_and_postgres_migrations_make_the_same_tables_and_columns() {
    let sqlite = TestDb::create(Backend::Sqlite).await;
    let postgres = TestDb::create(Backend::Postgres).await;
    let (sqlite, postgres) = (tables(&sqlite.db).await, tables(&postgres.db).await);
    assert!(
        sqlite.contains_key("orders") && sqlite.contains_key("jobs"),
        "{sqlite:?}"
    );
    assert_eq!(
        sqlite.keys().collect::<Vec<_>>(),
        postgres.keys().collect::<Vec<_>>(),
        "the same tables"
    );
    for (table, columns) in &sqlite {
        assert_eq!(columns, &postgres[table], "the columns of {table}");
    }
}
