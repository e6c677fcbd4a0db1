fn main() {
    std::process::exit(quill::cli::main());
}
