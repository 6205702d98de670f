/*
 * sleeper.c - a program that is not a procpool worker and never answers:
 * it ignores its arguments and sleeps for a minute.  Used as a worker
 * executable to show that a start which never says hello is bounded
 * (issue 7, item 9; issue 8, item 2).
 */
#include "helpers.h"

int main(void) {
  pp_test_sleep_ms(60000);
  return 0;
}
