/* test_stats.c - orch.Stats (stats.c), the statistics of every invoker:
 * exact nearest-rank percentiles while the samples fit STATS_EXACT, within
 * 1 % of the exact ones past it, n/sum/min/max always exact, a bounded
 * number of buckets over a million samples, NAN when empty.  Prints TAP. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "lauxlib.h"
#include "lualib.h"

#include "core.h"

static int n_test;
static int failed;

static void ok(int cond, const char *what) {
  printf("%sok %d - %s\n", cond ? "" : "not ", ++n_test, what);
  if (!cond) failed++;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* nearest rank over sorted v[0..n) */
static double exact_pct(const double *v, size_t n, double p) {
  double rank = ceil(p / 100.0 * (double)n);
  if (rank < 1) rank = 1;
  return v[(size_t)rank - 1];
}

static stats *new_stats(lua_State *L) {
  stats_push_new(L);
  return stats_check(L, -1);
}

int main(void) {
  lua_State *L = luaL_newstate();
  static const double P[] = {1, 50, 90, 99, 100};
  size_t i, k;
  stats_open(L);

  {
    stats *s = new_stats(L);
    ok(s->n == 0 && isnan(stats_percentile(s, 50)), "empty: n 0, percentile NAN");
  }

  { /* 1..60 in a shuffled order: every percentile exact */
    stats *s = new_stats(L);
    double v[60];
    int exact = 1;
    for (i = 0; i < 60; i++) v[i] = (double)((i * 37) % 60 + 1);
    for (i = 0; i < 60; i++) stats_add(s, v[i]);
    qsort(v, 60, sizeof *v, cmp_double);
    for (k = 0; k < sizeof P / sizeof *P; k++) exact &= stats_percentile(s, P[k]) == exact_pct(v, 60, P[k]);
    ok(exact, "under STATS_EXACT samples: nearest-rank percentiles exact");
    ok(s->n == 60 && s->min == 1 && s->max == 60 && s->sum == 1830, "n, min, max, sum exact");
    stats_add(s, 0.5);
    ok(stats_percentile(s, 1) == 0.5, "a sample after a percentile was asked is counted (sorted again)");
  }

  { /* a million skewed samples with zeros: within 1 %, bounded buckets */
    enum { N = 1000000 };
    stats *s = new_stats(L);
    double *v = malloc(N * sizeof *v), sum = 0;
    uint64_t seed = 7;
    int within = 1;
    for (i = 0; i < N; i++) {
      seed = seed * 6364136223846793005ull + 1442695040888963407ull;
      v[i] = (i % 7 == 0) ? 0 : pow((double)(seed >> 11) / 9007199254740992.0, 3) * 10;
      stats_add(s, v[i]);
      sum += v[i];
    }
    qsort(v, N, sizeof *v, cmp_double);
    for (k = 0; k < sizeof P / sizeof *P; k++) {
      double want = exact_pct(v, N, P[k]), got = stats_percentile(s, P[k]);
      if (want == 0 ? got != 0 : fabs(got - want) / want > 0.01) {
        printf("# p%g: %.9g, exact %.9g\n", P[k], got, want);
        within = 0;
      }
    }
    ok(within, "past STATS_EXACT: percentiles within 1 % of the exact ones");
    ok(s->n == N && s->max == v[N - 1] && s->min == 0 && fabs(s->sum - sum) < 1e-6 * sum,
       "n, min, max exact and sum to rounding over a million samples");
    ok(s->nb < 2000, "a bounded number of buckets");
    free(v);
  }

  lua_close(L);
  printf("1..%d\n", n_test);
  return failed ? 1 : 0;
}
