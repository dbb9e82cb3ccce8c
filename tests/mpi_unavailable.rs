//! Without a usable MPI library, `Mpi::init` is `Unavailable` with the loader's reason, and
//! nothing else breaks. (The collectives themselves run under `mpirun -n 4` in the test
//! command: `examples/mpi_collectives.rs`.)

use anyaccel::hal::ErrorCode;
use anyaccel::mpi::{Mpi, MPI_LIB_ENV};

#[test]
fn a_missing_mpi_library_is_unavailable_with_the_reason() {
    // This test binary is its own process: the library is chosen once, here.
    std::env::set_var(MPI_LIB_ENV, "/nonexistent/libmpi.so.40");
    let e = Mpi::init().err().expect("no MPI at that path");
    assert_eq!(e.code(), ErrorCode::Unavailable, "{e}");
    assert!(e.message().contains("/nonexistent/libmpi.so.40"), "{e}");
    assert!(e.message().contains(MPI_LIB_ENV), "{e}");
    // Asked again, the same answer (MPI is set up once per process).
    assert_eq!(Mpi::init().err(), Some(e));
}
