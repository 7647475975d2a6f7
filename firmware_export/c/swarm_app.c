/* swarm_app.c - crazyflie-firmware app that flies a swarm_rl policy onboard.
 *
 * Generated alongside swarm_policy.c (the network) and swarm_app_config.h (rate, defaults)
 * by `swarm-rl export firmware`; built out of tree with the firmware's Kbuild (see Makefile,
 * Kbuild and app-config next to this folder, and docs/firmware.md in swarm_rl).
 *
 * Every SWARM_APP_RATE_HZ tick, while the parameter swarmPolicy.enable is 1:
 *   own state (position, velocity, attitude quaternion, gyro) from the state estimator,
 *   neighbours from the firmware's peer localization (positions broadcast by the ground, e.g.
 *   a motion-capture system through Crazyswarm2; velocities by finite differences here),
 *   goal from the parameters swarmPolicy.goalX/Y/Z (world frame, m)
 *   -> swarm_obs_build -> swarm_policy_run -> command:
 *   - motors policy (SWARM_POLICY_ACTION_MODE_MOTORS): an out-of-tree controller
 *     (CONFIG_CONTROLLER_OOT) in the stabilizer loop; normalisedForces[4] in [0, 1]; while
 *     disabled it is the stock PID controller, so take-off and landing work as usual;
 *   - velocity policy: the app task sends a world-frame velocity + yaw-rate setpoint to the
 *     commander; on disable it commands zero velocity, releases its setpoint priority and
 *     asks the high-level commander to hold the current position.
 * A non-finite observation or action disables the policy (swarmPolicy.enable -> 0).
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "app.h"

#include "FreeRTOS.h"
#include "task.h"

#include "commander.h"
#include "crtp_commander_high_level.h"
#include "log.h"
#include "param.h"
#include "peer_localization.h"
#include "stabilizer_types.h"
#include "usec_time.h"

#define DEBUG_MODULE "SWARMPOL"
#include "debug.h"

#include "swarm_app_config.h"
#include "swarm_obs.h"
#include "swarm_policy.h"

#if SWARM_POLICY_ACTION_MODE_MOTORS
#include "controller.h"
#include "controller_pid.h"
#endif

#define DEG_TO_RAD 0.017453292519943295f

static uint8_t enable;             /* param: 1 = fly the policy */
static float goal[3] = SWARM_APP_DEFAULT_GOAL_M;
static float rangeM = SWARM_POLICY_NEIGHBOUR_RANGE_M;
static uint16_t peerMaxAgeMs = SWARM_APP_PEER_MAX_AGE_MS;
static float peerVelTau = SWARM_APP_PEER_VEL_TAU_S;

static uint8_t active;             /* log: the policy commands the drone */
static uint8_t neighbours;         /* log: peers in the last observation */
static uint32_t inferUs;           /* log: duration of the last inference (us) */
static uint32_t inferences;        /* log */
static float obs[SWARM_POLICY_OBS_DIM];
static float action[SWARM_POLICY_ACTION_DIM];
static swarm_peer_tracker_t tracker;
static swarm_peer_state_t peers[SWARM_OBS_MAX_PEERS];

static bool allFinite(const float *x, int n)
{
    for (int i = 0; i < n; ++i) {
        if (!isfinite(x[i])) {
            return false;
        }
    }
    return true;
}

/* One policy tick; false (and the policy disabled) on a non-finite observation or action. */
static bool policyStep(const swarm_own_state_t *own)
{
    for (uint8_t i = 0; i < PEER_LOCALIZATION_MAX_NEIGHBORS; ++i) {
        peerLocalizationOtherPosition_t *other = peerLocalizationGetPositionByIdx(i);
        if (other == NULL || other->id == 0) {
            continue;
        }
        const float pos[3] = {other->pos.x, other->pos.y, other->pos.z};
        /* stamped with the tick of arrival (peer_localization.c) */
        swarm_peers_update(&tracker, other->id, T2M(other->pos.timestamp), pos, peerVelTau);
    }
    const uint32_t now = T2M(xTaskGetTickCount());
    const int n = swarm_peers_collect(&tracker, now, peerMaxAgeMs, peers, SWARM_OBS_MAX_PEERS);
    swarm_obs_build(own, goal, peers, n, rangeM, obs);
    neighbours = (uint8_t)n;
    if (!allFinite(obs, SWARM_POLICY_OBS_DIM)) {
        DEBUG_PRINT("non-finite observation: policy disabled\n");
        enable = 0;
        return false;
    }
    const uint64_t t0 = usecTimestamp();
    swarm_policy_run(obs, action);
    inferUs = (uint32_t)(usecTimestamp() - t0);
    ++inferences;
    if (!allFinite(action, SWARM_POLICY_ACTION_DIM)) {
        DEBUG_PRINT("non-finite action: policy disabled\n");
        enable = 0;
        return false;
    }
    return true;
}

#if SWARM_POLICY_ACTION_MODE_MOTORS

void appMain(void)
{
    DEBUG_PRINT("swarm policy (motors, %d Hz): set swarmPolicy.enable=1 to fly it\n",
                SWARM_APP_RATE_HZ);
    while (1) {
        vTaskDelay(M2T(2000));
    }
}

void controllerOutOfTreeInit(void)
{
    swarm_peers_reset(&tracker);
    controllerPidInit();
}

bool controllerOutOfTreeTest(void)
{
    return controllerPidTest();
}

void controllerOutOfTree(control_t *control, const setpoint_t *setpoint,
                         const sensorData_t *sensors, const state_t *state,
                         const stabilizerStep_t stabilizerStep)
{
    if (!enable) {
        active = 0;
        controllerPid(control, setpoint, sensors, state, stabilizerStep);
        return;
    }
    if (!active || RATE_DO_EXECUTE(SWARM_APP_RATE_HZ, stabilizerStep)) {
        const swarm_own_state_t own = {
            .pos = {state->position.x, state->position.y, state->position.z},
            .vel = {state->velocity.x, state->velocity.y, state->velocity.z},
            .quat = {state->attitudeQuaternion.x, state->attitudeQuaternion.y,
                     state->attitudeQuaternion.z, state->attitudeQuaternion.w},
            .omega = {sensors->gyro.x * DEG_TO_RAD, sensors->gyro.y * DEG_TO_RAD,
                      sensors->gyro.z * DEG_TO_RAD},
        };
        active = policyStep(&own) ? 1 : 0;
    }
    if (!active) {
        controllerPid(control, setpoint, sensors, state, stabilizerStep);
        return;
    }
    /* The action is clamped to [0, 1] inside the network, held between policy ticks. */
    control->controlMode = controlModeForce;
    for (int i = 0; i < STABILIZER_NR_OF_MOTORS; ++i) {
        control->normalizedForces[i] = action[i];
    }
}

#else /* velocity policy */

/* Stop flying the policy: hover (zero velocity), release the setpoint priority, and let the
 * high-level commander hold the position it is told (a relative go-to of zero), so the
 * ground can land or move the drone as usual. */
static void handBack(setpoint_t *setpoint)
{
    memset(setpoint, 0, sizeof(*setpoint));
    setpoint->mode.x = modeVelocity;
    setpoint->mode.y = modeVelocity;
    setpoint->mode.z = modeVelocity;
    setpoint->mode.yaw = modeVelocity;
    commanderSetSetpoint(setpoint, COMMANDER_PRIORITY_CRTP);
    commanderNotifySetpointsStop(SWARM_APP_STOP_VALID_MS);
    crtpCommanderHighLevelGoTo(0.0f, 0.0f, 0.0f, 0.0f, 1.0f, true);
    active = 0;
}

void appMain(void)
{
    const logVarId_t idX = logGetVarId("stateEstimate", "x");
    const logVarId_t idY = logGetVarId("stateEstimate", "y");
    const logVarId_t idZ = logGetVarId("stateEstimate", "z");
    const logVarId_t idVx = logGetVarId("stateEstimate", "vx");
    const logVarId_t idVy = logGetVarId("stateEstimate", "vy");
    const logVarId_t idVz = logGetVarId("stateEstimate", "vz");
    const logVarId_t idQx = logGetVarId("stateEstimate", "qx");
    const logVarId_t idQy = logGetVarId("stateEstimate", "qy");
    const logVarId_t idQz = logGetVarId("stateEstimate", "qz");
    const logVarId_t idQw = logGetVarId("stateEstimate", "qw");
    const logVarId_t idGx = logGetVarId("gyro", "x");
    const logVarId_t idGy = logGetVarId("gyro", "y");
    const logVarId_t idGz = logGetVarId("gyro", "z");
    const logVarId_t ids[13] = {idX, idY, idZ, idVx, idVy, idVz, idQx, idQy, idQz, idQw,
                                idGx, idGy, idGz};
    for (int i = 0; i < 13; ++i) {
        if (!logVarIdIsValid(ids[i])) {
            DEBUG_PRINT("state log variable %d missing: the policy cannot run\n", i);
            while (1) {
                enable = 0;
                vTaskDelay(M2T(1000));
            }
        }
    }
    swarm_peers_reset(&tracker);
    DEBUG_PRINT("swarm policy (velocity, %d Hz): set swarmPolicy.enable=1 to fly it\n",
                SWARM_APP_RATE_HZ);
    TickType_t wake = xTaskGetTickCount();
    setpoint_t setpoint;
    while (1) {
        vTaskDelayUntil(&wake, M2T(1000 / SWARM_APP_RATE_HZ));
        if (!enable) {
            if (active) {
                handBack(&setpoint);
            }
            continue;
        }
        const swarm_own_state_t own = {
            .pos = {logGetFloat(idX), logGetFloat(idY), logGetFloat(idZ)},
            .vel = {logGetFloat(idVx), logGetFloat(idVy), logGetFloat(idVz)},
            .quat = {logGetFloat(idQx), logGetFloat(idQy), logGetFloat(idQz), logGetFloat(idQw)},
            .omega = {logGetFloat(idGx) * DEG_TO_RAD, logGetFloat(idGy) * DEG_TO_RAD,
                      logGetFloat(idGz) * DEG_TO_RAD},
        };
        if (!policyStep(&own)) {
            if (active) {
                handBack(&setpoint);
            }
            continue;
        }
        /* (vx, vy, vz, yaw rate) in [-1, 1] (clamped in the network) -> SI, as the simulator
         * and swarm_rl.runtime scale it; the commander wants the yaw rate in deg/s. */
        memset(&setpoint, 0, sizeof(setpoint));
        setpoint.mode.x = modeVelocity;
        setpoint.mode.y = modeVelocity;
        setpoint.mode.z = modeVelocity;
        setpoint.mode.yaw = modeVelocity;
        setpoint.velocity.x = action[0] * SWARM_POLICY_MAX_SPEED_MPS;
        setpoint.velocity.y = action[1] * SWARM_POLICY_MAX_SPEED_MPS;
        setpoint.velocity.z = action[2] * SWARM_POLICY_MAX_SPEED_MPS;
        setpoint.attitudeRate.yaw = action[3] * SWARM_POLICY_MAX_YAW_RATE_RAD_S / DEG_TO_RAD;
        setpoint.velocity_body = false;
        commanderSetSetpoint(&setpoint, COMMANDER_PRIORITY_CRTP);
        active = 1;
    }
}

#endif

PARAM_GROUP_START(swarmPolicy)
PARAM_ADD(PARAM_UINT8, enable, &enable)
PARAM_ADD(PARAM_FLOAT, goalX, &goal[0])
PARAM_ADD(PARAM_FLOAT, goalY, &goal[1])
PARAM_ADD(PARAM_FLOAT, goalZ, &goal[2])
PARAM_ADD(PARAM_FLOAT, rangeM, &rangeM)
PARAM_ADD(PARAM_UINT16, peerMaxAgeMs, &peerMaxAgeMs)
PARAM_ADD(PARAM_FLOAT, peerVelTau, &peerVelTau)
PARAM_GROUP_STOP(swarmPolicy)

LOG_GROUP_START(swarmPolicy)
LOG_ADD(LOG_UINT8, active, &active)
LOG_ADD(LOG_UINT8, neighbours, &neighbours)
LOG_ADD(LOG_UINT32, inferUs, &inferUs)
LOG_ADD(LOG_UINT32, inferences, &inferences)
LOG_ADD(LOG_FLOAT, a0, &action[0])
LOG_ADD(LOG_FLOAT, a1, &action[1])
LOG_ADD(LOG_FLOAT, a2, &action[2])
LOG_ADD(LOG_FLOAT, a3, &action[3])
LOG_GROUP_STOP(swarmPolicy)
