/* The end of every test program's main(): the seed printed (test_seed),
 * STF_GPU_ONLY=1 keeps the *_gpu tests only, STF_TEST_FILTER keeps the
 * tests it names (a cmocka pattern, e.g. "*head_dims*": the GPU rounds'
 * sanitizer runs take one test by name), then the group runs.
 *     return test_main("stage 07 ...", tests, teardown_or_NULL); */
#ifndef STF_TEST_MAIN_H
#define STF_TEST_MAIN_H

#include <stdlib.h>

#include "harness.h"

static inline void test_start(void)
{
    test_seed();
    if (getenv("STF_GPU_ONLY")) cmocka_set_test_filter("*_gpu");
    if (getenv("STF_TEST_FILTER")) cmocka_set_test_filter(getenv("STF_TEST_FILTER"));
}

/* tests: the array itself (its size is taken here) */
#define test_main(name, tests, teardown) (test_start(), cmocka_run_group_tests_name(name, tests, NULL, teardown))

#endif
