#pragma once
// `kiln conform`: checks a client, through its driver, against every property (or some suites).
namespace kiln::conformance {

// argv as `kiln conform ...` gets it (argv[0] is "conform"). Returns the exit status:
// 0 all selected properties passed or were skipped, 1 some failed, 2 bad usage.
int conform_main(int argc, char** argv);

}  // namespace kiln::conformance
