//! `sqlx::migrate!` embeds the SQL files at compile time but cannot tell cargo about them on
//! stable Rust, so a new or edited migration would not trigger a rebuild without this.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
