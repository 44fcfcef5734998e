"""Vertex ids that smplx appends to the skeleton joints, by name.

The names are smplx's (`smplx.vertex_ids`); `EXTRA_JOINT_ORDER` is the order
in which `smplx.VertexJointSelector` appends them: face keypoints, feet, then
the fingertips of the left and the right hand.
"""

SMPLX = dict(nose=9120, reye=9929, leye=9448, rear=616, lear=6,
             LBigToe=5770, LSmallToe=5780, LHeel=8846,
             RBigToe=8463, RSmallToe=8474, RHeel=8635,
             lthumb=5361, lindex=4933, lmiddle=5058, lring=5169, lpinky=5286,
             rthumb=8079, rindex=7669, rmiddle=7794, rring=7905, rpinky=8022)

# smplx uses its SMPL+H ids for SMPL (the two share their body topology).
SMPLH = dict(nose=332, reye=6260, leye=2800, rear=4071, lear=583,
             LBigToe=3216, LSmallToe=3226, LHeel=3387,
             RBigToe=6617, RSmallToe=6624, RHeel=6787,
             lthumb=2746, lindex=2319, lmiddle=2445, lring=2556, lpinky=2673,
             rthumb=6191, rindex=5782, rmiddle=5905, rring=6016, rpinky=6133)

MANO = dict(thumb=744, index=320, middle=443, ring=554, pinky=671)

EXTRA_JOINT_ORDER = (
    'nose', 'reye', 'leye', 'rear', 'lear',
    'LBigToe', 'LSmallToe', 'LHeel', 'RBigToe', 'RSmallToe', 'RHeel',
    'lthumb', 'lindex', 'lmiddle', 'lring', 'lpinky',
    'rthumb', 'rindex', 'rmiddle', 'rring', 'rpinky',
)

SMPLX_EXTRA_JOINTS = tuple(SMPLX[name] for name in EXTRA_JOINT_ORDER)
SMPL_EXTRA_JOINTS = tuple(SMPLH[name] for name in EXTRA_JOINT_ORDER)
