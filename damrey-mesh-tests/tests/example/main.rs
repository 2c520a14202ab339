//! The example as a user runs it, with real processes: a worker process's flags, exit
//! codes and SIGTERM (`worker_process`), the `run` and `stop` scripts (`newcomer`), and
//! the proxy's dashboard in a browser over the running example (`dashboard`). The
//! binaries are built from this tree by the support before the first one starts.

mod dashboard;
mod newcomer;
mod worker_process;
