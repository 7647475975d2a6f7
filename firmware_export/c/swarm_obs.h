/* swarm_obs.h - the layout-v1 observation of swarm_rl (sim/observation.py), built on the
 * drone from its own state estimate and its peers' positions, and a tracker that turns the
 * peer positions of the firmware's peer localization into positions + velocities.
 *
 * Frames and units: world frame ENU (x east/forward, y north/left, z up), metres, m/s;
 * body frame FLU; quaternion body -> world in (x, y, z, w) order; body rates rad/s.
 * Plain C99, no firmware headers: the host tests compile it with gcc and compare it with the
 * Python observation function.
 */
#ifndef SWARM_OBS_H
#define SWARM_OBS_H

#include <stdint.h>

#include "swarm_policy.h"

#define SWARM_OBS_MAX_PEERS 16 /* >= the firmware's PEER_LOCALIZATION_MAX_NEIGHBORS (10) */
#define SWARM_OBS_OBSTACLE_RANGE_M 2.0f /* sim.observation.OBSTACLE_RANGE_M: "no column" */

typedef struct {
    float pos[3];      /* m, world */
    float vel[3];      /* m/s, world */
    float quat[4];     /* body -> world, (x, y, z, w) */
    float omega[3];    /* rad/s, body */
} swarm_own_state_t;

typedef struct {
    float pos[3];      /* m, world */
    float vel[3];      /* m/s, world */
} swarm_peer_state_t;

/* The observation of one drone: goal error (pos - goal), velocity, rotation matrix (row-major,
 * from the normalised quaternion), body rates, height (= z: the floor is z = 0), the K nearest
 * peers within range_m (nearest first; position and velocity relative to the drone, then a
 * 0/1 mask) and the 3 x 3 obstacle patch (no obstacle map on board: every entry is
 * SWARM_OBS_OBSTACLE_RANGE_M, what the simulator reports far from any column). */
void swarm_obs_build(const swarm_own_state_t *own, const float goal[3],
                     const swarm_peer_state_t *peers, int n_peers, float range_m,
                     float obs[SWARM_POLICY_OBS_DIM]);

/* Peer tracker: positions with time stamps in, velocities by finite differences between
 * successive distinct stamps, low-pass filtered with time constant tau_s (0 = raw). A peer's
 * first sample, or one after a gap longer than SWARM_PEER_MAX_GAP_MS, gets zero velocity. */
#define SWARM_PEER_MAX_GAP_MS 500u

typedef struct {
    uint8_t id;        /* radio id, 0 = free slot */
    uint32_t stamp_ms; /* time of the last sample */
    float pos[3];
    float vel[3];
} swarm_peer_track_t;

typedef struct {
    swarm_peer_track_t track[SWARM_OBS_MAX_PEERS];
} swarm_peer_tracker_t;

void swarm_peers_reset(swarm_peer_tracker_t *tracker);
/* New sample of peer `id` (1..255). A full tracker replaces its oldest entry. */
void swarm_peers_update(swarm_peer_tracker_t *tracker, uint8_t id, uint32_t stamp_ms,
                        const float pos[3], float tau_s);
/* Peers whose last sample is at most max_age_ms old at now_ms, into out[]; returns how many.
 * Older ones are dropped from the tracker. */
int swarm_peers_collect(swarm_peer_tracker_t *tracker, uint32_t now_ms, uint32_t max_age_ms,
                        swarm_peer_state_t *out, int max_out);

#endif /* SWARM_OBS_H */
