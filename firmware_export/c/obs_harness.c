/* obs_harness.c - host test driver of swarm_obs.c (raw float32 records in, rows out).
 *
 *   obs_harness obs IN OUT    records of own pos[3] vel[3] quat[4] omega[3], goal[3],
 *                             range_m, n_peers, then SWARM_OBS_MAX_PEERS x (pos[3] vel[3]);
 *                             writes one observation row per record.
 *   obs_harness act IN OUT    the same records as obs; writes the action of each
 *                             observation (swarm_obs_build, then swarm_policy_run).
 *   obs_harness track IN OUT  records of id, stamp_ms, pos[3], now_ms, max_age_ms, tau_s fed
 *                             to one tracker in order; writes per record the tracked
 *                             velocity of that id (NaN x 3 if not collected) and the number of
 *                             peers collected.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "swarm_obs.h"

#define OBS_RECORD (13 + 3 + 2 + 6 * SWARM_OBS_MAX_PEERS)
#define TRACK_RECORD 8

static int run_obs(FILE *in, FILE *out, int act)
{
    float rec[OBS_RECORD];
    float obs[SWARM_POLICY_OBS_DIM];
    float action[SWARM_POLICY_ACTION_DIM];
    swarm_peer_state_t peers[SWARM_OBS_MAX_PEERS];
    while (fread(rec, sizeof(float), OBS_RECORD, in) == OBS_RECORD) {
        swarm_own_state_t own;
        memcpy(own.pos, &rec[0], sizeof own.pos);
        memcpy(own.vel, &rec[3], sizeof own.vel);
        memcpy(own.quat, &rec[6], sizeof own.quat);
        memcpy(own.omega, &rec[10], sizeof own.omega);
        const int n = (int)rec[17];
        for (int j = 0; j < SWARM_OBS_MAX_PEERS; ++j) {
            memcpy(peers[j].pos, &rec[18 + 6 * j], sizeof peers[j].pos);
            memcpy(peers[j].vel, &rec[21 + 6 * j], sizeof peers[j].vel);
        }
        swarm_obs_build(&own, &rec[13], peers, n, rec[16], obs);
        if (act) {
            swarm_policy_run(obs, action);
            fwrite(action, sizeof(float), SWARM_POLICY_ACTION_DIM, out);
        } else {
            fwrite(obs, sizeof(float), SWARM_POLICY_OBS_DIM, out);
        }
    }
    return 0;
}

static int run_track(FILE *in, FILE *out)
{
    static swarm_peer_tracker_t tracker;
    float rec[TRACK_RECORD];
    swarm_peer_state_t peers[SWARM_OBS_MAX_PEERS];
    swarm_peers_reset(&tracker);
    while (fread(rec, sizeof(float), TRACK_RECORD, in) == TRACK_RECORD) {
        const uint8_t id = (uint8_t)rec[0];
        swarm_peers_update(&tracker, id, (uint32_t)rec[1], &rec[2], rec[7]);
        float row[4] = {NAN, NAN, NAN, 0.0f};
        for (int i = 0; i < SWARM_OBS_MAX_PEERS; ++i) {
            if (tracker.track[i].id == id) {
                memcpy(row, tracker.track[i].vel, 3 * sizeof(float));
            }
        }
        row[3] = (float)swarm_peers_collect(&tracker, (uint32_t)rec[5], (uint32_t)rec[6], peers,
                                            SWARM_OBS_MAX_PEERS);
        int collected = 0;
        for (int i = 0; i < SWARM_OBS_MAX_PEERS; ++i) {
            collected |= tracker.track[i].id == id;
        }
        if (!collected) {
            row[0] = row[1] = row[2] = NAN;
        }
        fwrite(row, sizeof(float), 4, out);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s obs|act|track IN OUT\n", argv[0]);
        return 2;
    }
    FILE *in = fopen(argv[2], "rb");
    FILE *out = fopen(argv[3], "wb");
    if (in == NULL || out == NULL) {
        fprintf(stderr, "cannot open %s or %s\n", argv[2], argv[3]);
        return 3;
    }
    const int rc = strcmp(argv[1], "obs") == 0 ? run_obs(in, out, 0)
                   : strcmp(argv[1], "act") == 0 ? run_obs(in, out, 1)
                   : strcmp(argv[1], "track") == 0 ? run_track(in, out) : 2;
    fclose(in);
    fclose(out);
    return rc;
}
