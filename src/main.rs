//! The `duel` command line.
fn main() {
    println!("duel: placeholder");
}
